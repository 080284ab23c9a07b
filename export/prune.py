"""Close MLP neurons the sparse model does not need, proving every cut on the whole domain.

Neuron gates are input-independent, so closing one is the same structural change a trained gate
makes. This pass closes every neuron it can while all 10,000 answers stay exactly what they were
and the attention edges do not grow: a binary search per layer over the neurons ordered by how
much they contribute (mean |activation| x |output weights|).
"""

import torch
import torch.nn.functional as F

from export.model import AdderTransformer
from export.evaluate import answers_exact, greedy_digits
from export.task import ANSWER_START


@torch.no_grad()
def neuron_importance(model: AdderTransformer, x: torch.Tensor, layer: int) -> torch.Tensor:
    """(d_mlp,) mean |GELU output| x |proj column| over the domain, from the block's input residual x;
    closed neurons get +inf."""
    block = model.blocks[layer]
    y, _, _ = block.attn(block.ln_1(x), "hard")
    act = F.gelu(block.mlp.fc(block.ln_2(x + y))).abs().mean(dim=(0, 1))
    score = act * block.mlp.proj.weight.norm(dim=0)
    return torch.where(block.mlp.neuron_mask(), score, torch.full_like(score, float("inf")))


@torch.no_grad()
def _answers_and_edges(model: AdderTransformer, x: torch.Tensor, first: int, tokens: torch.Tensor) -> tuple[bool, int]:
    """Blocks first.. on their cached input x (hard gates) over the model's own greedy sequences:
    are all answers unchanged (teacher forcing on them equals greedy decoding exactly when they
    are), and the active edges of those blocks."""
    logits, gates, _, _ = model.forward_from(x, first, "hard", "hard")
    right = answers_exact(logits, tokens).all()
    return bool(right), int(sum(g.sum() for g in gates))


@torch.no_grad()
def prune_neurons(model: AdderTransformer, tokens: torch.Tensor) -> list[int]:
    """Close neurons in place while every answer is unchanged and no denser; return neurons kept per layer."""
    tokens = torch.cat([tokens[:, :ANSWER_START], greedy_digits(model, tokens, gated=True)], dim=1)
    embedded = model.embed(tokens[:, :-1])
    max_edges = _answers_and_edges(model, embedded, 0, tokens)[1]

    for layer, block in enumerate(model.blocks):
        # closing neurons of this layer cannot change the blocks before it: run those once
        x, gates_before, _, _ = model.run_blocks(embedded, 0, layer, "hard", "hard")
        edges_before = int(sum(g.sum() for g in gates_before))

        def still_good() -> bool:
            exact, edges = _answers_and_edges(model, x, layer, tokens)
            return exact and edges_before + edges <= max_edges

        logits = block.mlp.neuron_logits
        order = neuron_importance(model, x, layer).argsort()
        kept = int(block.mlp.neuron_mask().sum())
        saved = logits.clone()
        lo, hi = 0, kept  # largest k such that closing the k least important keeps the model good
        while lo < hi:
            k = (lo + hi + 1) // 2
            logits.copy_(saved)
            logits[order[:k]] = -1.0
            if still_good():
                lo = k
            else:
                hi = k - 1
        logits.copy_(saved)
        logits[order[:lo]] = -1.0
    return [int(b.mlp.neuron_mask().sum()) for b in model.blocks]
