"""The task: 2-digit addition as 11 tokens (`36+28=00064`), its 10,000-problem domain and split."""

from dataclasses import dataclass

import torch

from contract import ANSWER_DIGITS, SEQUENCE_LENGTH, VOCAB
from contract.domain import digit_columns, has_carry, operands, problem_text  # noqa: F401 (export API)

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


def sequences(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Token ids (N, 11) for operand tensors a, b (N,), digits most significant first."""
    s = a + b
    cols = [a // 10, a % 10, torch.full_like(a, PLUS), b // 10, b % 10, torch.full_like(a, EQUALS)]
    cols += digit_columns(s)
    return torch.stack(cols, dim=1)


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
    a, b = (torch.from_numpy(x) for x in operands())
    perm = torch.randperm(len(a), generator=torch.Generator().manual_seed(seed))
    n_test = int(round(len(a) * test_fraction))
    return Domain(a=a, b=b, train=perm[n_test:].sort().values, test=perm[:n_test].sort().values)
