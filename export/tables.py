"""Precompute what depends on one token only: the compile turns such positions into table lookups.

A position whose query rows are dead at every layer (or position 0, which can only read itself)
never mixes in another token, so its whole residual stream is a function of (position, token):
12 rows per position. The compile folds those positions into Gathers, the way any compiler folds
a constant; the dense build gets the same treatment for the positions it qualifies for.
"""

from dataclasses import dataclass

import numpy as np
import torch

from export.model import AdderTransformer
from export.task import VOCAB_SIZE


@dataclass(frozen=True)
class PositionTables:
    """Per (position * vocab + token) row: each layer's attention input and the next-token guess."""

    attn_inputs: list[np.ndarray]  # per layer (T*V, d): ln_1(x_l), from which K and V are sliced
    self_gates: list[np.ndarray]  # per layer (T*V, heads) bool: position 0's gate on itself
    predictions: np.ndarray  # (T*V,) int64 argmax next token


@torch.no_grad()
def position_tables(model: AdderTransformer, gated: bool) -> PositionTables:
    """Run every (position, token) alone through the model, as if no other position were read."""
    n_positions = model.pos_emb.num_embeddings
    pos = torch.arange(n_positions).repeat_interleave(VOCAB_SIZE)
    tok = torch.arange(VOCAB_SIZE).repeat(n_positions)
    x = model.tok_emb(tok) + model.pos_emb(pos)  # (T*V, d)
    only_self = (pos == 0).to(x.dtype)[:, None]  # position 0 attends to itself with weight 1
    attn_inputs, self_gates = [], []
    mode = "hard" if gated else "off"
    for block in model.blocks:
        h = block.ln_1(x)
        attn = block.attn
        q = torch.einsum("nd,hde->nhe", h, attn.W_Q)
        k = torch.einsum("nd,hde->nhe", h, attn.W_K)
        v = torch.einsum("nd,hde->nhe", h, attn.W_V)
        logit = (q * k).sum(-1) / attn.d_head**0.5  # (T*V, heads): a_00
        gate = (logit + attn.gate_bias > 0) if gated else torch.ones_like(logit, dtype=torch.bool)
        y = torch.einsum("nhe,hed->nd", v * gate[..., None].to(v.dtype), attn.W_O)
        x = x + only_self * y
        x = x + block.mlp(block.ln_2(x), mode)[0]
        attn_inputs.append(h.numpy().astype(np.float32))
        self_gates.append(gate.numpy())
    predictions = model.unembed(model.ln_f(x)).argmax(-1).numpy().astype(np.int64)
    return PositionTables(attn_inputs, self_gates, predictions)
