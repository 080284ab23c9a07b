"""The task's domain and answers, once for both sides: every problem, its digits, its carry, its text.

The functions work on numpy arrays and, where noted, on torch tensors too (only arithmetic operators).
"""

import numpy as np

from contract import ANSWER_DIGITS, OPERAND_DIGITS, OPERAND_MAX, OPERAND_MIN, SEQUENCE_LENGTH

# The positions a model reads, a1 a2 + b1 b2 = c1 c2 c3 c4 (the last answer token is never read).
POSITION_NAMES = ([f"a{i + 1}" for i in range(OPERAND_DIGITS)] + ["+"] + [f"b{i + 1}" for i in range(OPERAND_DIGITS)]
                  + ["="] + [f"c{i + 1}" for i in range(ANSWER_DIGITS - 1)])
assert len(POSITION_NAMES) == SEQUENCE_LENGTH - 1


def operands() -> tuple[np.ndarray, np.ndarray]:
    """Every problem: a and b, int64 [10_000], a-major (a=0 with b=0..99 first)."""
    values = np.arange(OPERAND_MIN, OPERAND_MAX + 1, dtype=np.int64)
    a, b = np.meshgrid(values, values, indexing="ij")
    return a.ravel(), b.ravel()


def digit_columns(sums) -> list:
    """The answer's digits, most significant first, one column per digit (numpy or torch)."""
    return [(sums // 10 ** p) % 10 for p in reversed(range(ANSWER_DIGITS))]


def answer_digits(sums: np.ndarray) -> np.ndarray:
    """int64 [N, 5]: the digits of each sum, most significant first."""
    return np.stack(digit_columns(np.asarray(sums, dtype=np.int64)), axis=1)


def has_carry(a, b):
    """True where the addition carries: units into tens, or tens into hundreds (numpy or torch)."""
    return ((a % 10 + b % 10) >= 10) | ((a + b) >= 100)


def problem_text(a: int, b: int, answer: str | None = None) -> str:
    """`36+28=00064`: the 11 tokens of one problem, with the given answer or the true one."""
    answer = f"{a + b:0{ANSWER_DIGITS}d}" if answer is None else answer
    return f"{a:0{OPERAND_DIGITS}d}+{b:0{OPERAND_DIGITS}d}={answer}"
