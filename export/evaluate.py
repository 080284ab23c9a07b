"""Exact-match evaluation over the domain: teacher-forced argmax equals greedy decoding when exact."""

import torch
import torch.nn.functional as F

from export.task import ANSWER_START, PREDICT_FROM


def answer_logits(model, tokens: torch.Tensor, attn_gates: str, neuron_gates: str):
    """Logits (N, 5, vocab) for the five answer tokens, plus the model's density terms."""
    logits, _, attn_d, neuron_d = model(tokens[:, :-1], attn_gates, neuron_gates)
    return logits[:, PREDICT_FROM:], attn_d, neuron_d


def answer_loss(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the answer tokens only (the operands are not predictable)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, ANSWER_START:].reshape(-1))


def answers_exact(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """(N,) bool from full-sequence (N, T, vocab) or answer (N, 5, vocab) logits: every digit right."""
    return (logits[:, -(tokens.shape[1] - ANSWER_START):].argmax(-1) == tokens[:, ANSWER_START:]).all(dim=1)


@torch.no_grad()
def exact_mask(model, tokens: torch.Tensor, gated: bool) -> torch.Tensor:
    """(N,) bool: the whole 5-digit answer is right.

    Teacher forcing feeds the true answer prefix; a problem is answered exactly under greedy
    decoding iff every teacher-forced prediction is right (induction over the five steps), so
    exact-match counts are the same as greedy decoding's and one forward pass suffices.
    """
    mode = "hard" if gated else "off"
    return answers_exact(answer_logits(model, tokens, mode, mode)[0], tokens)


@torch.no_grad()
def greedy_digits(model, tokens: torch.Tensor, gated: bool) -> torch.Tensor:
    """(N, 5) digits by true greedy decoding (each step feeds back the model's own prediction)."""
    mode = "hard" if gated else "off"
    seq = tokens[:, :ANSWER_START].clone()
    for _ in range(tokens.shape[1] - ANSWER_START):
        logits, _, _, _ = model(seq, mode, mode)
        seq = torch.cat([seq, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return seq[:, ANSWER_START:]
