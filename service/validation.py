"""Validate operands at the boundary, once, with messages naming the field, the value and the allowed range."""

import numpy as np

from contract import OPERAND_MAX, OPERAND_MIN
from service.errors import InvalidArgument, ResourceExhausted

RANGE = f"an integer in {OPERAND_MIN}..{OPERAND_MAX}"


def operand_pair(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 [1] arrays for one problem (Add), or InvalidArgument; plain int checks, no numpy reductions."""
    for name, value in (("a", a), ("b", b)):
        if not OPERAND_MIN <= value <= OPERAND_MAX:
            raise InvalidArgument(f"{name}={value} is out of range: must be {RANGE}")
    return np.array((a,), dtype=np.int64), np.array((b,), dtype=np.int64)


def operand_arrays(a, b, max_rows: int, names: tuple[str, str] = ("a", "b")) -> tuple[np.ndarray, np.ndarray]:
    """int64 [N] arrays from two equal-length sequences of operands, or InvalidArgument/ResourceExhausted.

    An element out of range is named with its index (`a[3]=120`).
    """
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if len(a) != len(b):
        raise InvalidArgument(f"{names[0]} and {names[1]} must have the same length, got {len(a)} and {len(b)}")
    if len(a) == 0:
        raise InvalidArgument(f"{names[0]} and {names[1]} are empty: send at least one problem")
    if len(a) > max_rows:
        raise ResourceExhausted(f"{len(a)} problems in one request, the limit is {max_rows}")
    for name, values in zip(names, (a, b)):
        if not _in_range(values):
            _out_of_range(name, values)
    return a, b


def _in_range(values: np.ndarray) -> bool:
    if len(values) == 1:  # one problem (most requests): plain int comparisons beat two reductions
        return OPERAND_MIN <= int(values[0]) <= OPERAND_MAX
    return OPERAND_MIN <= values.min() and values.max() <= OPERAND_MAX


def _out_of_range(name: str, values: np.ndarray):
    bad = np.flatnonzero((values < OPERAND_MIN) | (values > OPERAND_MAX))
    i = int(bad[0])
    more = f" ({len(bad) - 1} more out of range)" if len(bad) > 1 else ""
    raise InvalidArgument(f"{name}[{i}]={int(values[i])} is out of range: must be {RANGE}{more}")
