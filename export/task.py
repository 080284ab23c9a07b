"""The task: 2-digit addition as 11 tokens (`36+28=00064`), its 10,000-problem domain and split."""

from dataclasses import dataclass

import torch

from contract import ANSWER_DIGITS, OPERAND_MAX, SEQUENCE_LENGTH, VOCAB

PLUS, EQUALS = VOCAB.index("+"), VOCAB.index("=")
VOCAB_SIZE = len(VOCAB)
# The model reads positions 0..9 and predicts the next token at each; position 10 is never read.
N_POSITIONS = SEQUENCE_LENGTH - 1
ANSWER_START = SEQUENCE_LENGTH - ANSWER_DIGITS  # 6: first answer token
PREDICT_FROM = ANSWER_START - 1  # 5: the `=` position predicts the first answer digit


def encode_text(text: str) -> list[int]:
    """`36+28=00064` -> token ids."""
    return [VOCAB.index(ch) for ch in text]


def decode_tokens(tokens) -> str:
    """Token ids -> text."""
    return "".join(VOCAB[int(t)] for t in tokens)


def problem_text(a: int, b: int) -> str:
    """The full 11-character sequence for a + b."""
    return f"{a:02d}+{b:02d}={a + b:05d}"


def sequences(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Token ids (N, 11) for operand tensors a, b (N,), digits most significant first."""
    s = a + b
    cols = [a // 10, a % 10, torch.full_like(a, PLUS), b // 10, b % 10, torch.full_like(a, EQUALS)]
    cols += [(s // 10**p) % 10 for p in reversed(range(ANSWER_DIGITS))]
    return torch.stack(cols, dim=1)


def has_carry(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """True where the addition carries (units into tens, or tens into hundreds)."""
    return ((a % 10 + b % 10) >= 10) | ((a + b) >= 100)


@dataclass(frozen=True)
class Domain:
    """All 10,000 problems, with a fixed seeded train/test split (indices into a, b)."""

    a: torch.Tensor  # (10000,) int64
    b: torch.Tensor  # (10000,) int64
    train: torch.Tensor  # indices
    test: torch.Tensor  # indices

    @property
    def tokens(self) -> torch.Tensor:
        return sequences(self.a, self.b)


def make_domain(seed: int, test_fraction: float) -> Domain:
    """Enumerate every problem (a-major order) and split it with a seeded permutation."""
    grid = torch.arange(OPERAND_MAX + 1, dtype=torch.int64)
    a = grid.repeat_interleave(OPERAND_MAX + 1)
    b = grid.repeat(OPERAND_MAX + 1)
    perm = torch.randperm(len(a), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(a) * test_fraction))
    return Domain(a=a, b=b, train=perm[n_test:].sort().values, test=perm[:n_test].sort().values)
