"""A 4-layer decoder-only transformer with the paper's gated sparse attention and optional neuron gates.

Attention weights are stored per head (W_Q: [n_heads, d_model, d_head]) so that deleting a head is
slicing. Gate modes: "off" (dense base model), "sample" (training: logistic-noise Bernoulli gate
with a straight-through gradient), "hard" (inference: the deterministic gate rule below) and
"polish" (the hard gate's values with sigmoid's straight-through gradient, for a final finetune).

Gate rules (what the gates do to the softmax, `ModelConfig.gate_rule`): "paper" multiplies the
softmax over every causal key by the gates afterwards (sparsification trains under it);
"renormalised" takes the softmax over the open edges only (the commit phase and the served sparse
model), so a closed edge leaves its row's denominator and the circuit is all that computes the answer.
"""

import math
from dataclasses import asdict, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from export.config import ModelConfig
from export.task import N_POSITIONS, VOCAB_SIZE

PAPER_RULE = "paper"
RENORMALISED_RULE = "renormalised"
_GATE = "A_ij = 1[a_ij + b > 0], a_ij = q_i.k_j / sqrt(d_head), b = gate_bias (circuit edges only)"
GATE_RULES = {  # the rule's name -> what the manifest and circuit.json record
    PAPER_RULE: f"{PAPER_RULE}: {_GATE}; y_i = sum_j softmax_j(a_i.) A_ij v_j over every causal key, "
                "no renormalisation",
    RENORMALISED_RULE: f"{RENORMALISED_RULE}: {_GATE}; y_i = sum_j softmax over the open edges of row i "
                       "(a_ij) v_j, 0 for a row with no open edge",
}
GATE_RULE = GATE_RULES[PAPER_RULE]  # the rule sparsification trains under


def straight_through(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Value exactly `hard` (x - x = 0), gradient of `soft`."""
    return hard + (soft - soft.detach())


def logistic_gate(logits: torch.Tensor) -> torch.Tensor:
    """Exact Bernoulli(sigmoid(logits)) sample; backward is d sigmoid(logits + noise) (straight-through)."""
    u = torch.rand_like(logits).clamp(1e-6, 1 - 1e-6)
    noisy = logits + torch.log(u) - torch.log1p(-u)
    return straight_through((noisy > 0).to(logits.dtype), torch.sigmoid(noisy))


def renormalised_weights(logits: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Softmax of `logits` over the edges whose gate is open (their gates carry the gradient); 0 for a
    row with none. Closed edges of the frozen set have a_ij + b <= 0 < a_open + b, so the clamp only
    touches keys whose gate is the constant 0 (outside the set, future, ablated): it keeps exp finite."""
    open_ = gates.detach() > 0
    top = logits.detach().masked_fill(~open_, float("-inf")).amax(-1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    scores = torch.exp((logits - top).clamp(max=0)) * gates
    # a row with an open edge sums to >= 1 (its top edge contributes exp(0)); a row with none to 0,
    # whose 0 / 1 keeps the gradient finite (0 / tiny sent 1e38 gradients into Adam)
    return scores / scores.sum(-1, keepdim=True).clamp_min(1.0)


class GatedSelfAttention(nn.Module):
    """Causal self-attention whose softmax weights are gated 0/1 under `gate_rule` (see the module doc)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, d, dh = cfg.n_heads, cfg.d_model, cfg.d_model // cfg.n_heads
        self.n_heads, self.d_head, self.gate_bias, self.gate_rule = h, dh, cfg.gate_bias, cfg.gate_rule
        self.W_Q = nn.Parameter(torch.randn(h, d, dh) * 0.02)
        self.W_K = nn.Parameter(torch.randn(h, d, dh) * 0.02)
        self.W_V = nn.Parameter(torch.randn(h, d, dh) * 0.02)
        self.W_O = nn.Parameter(torch.randn(h, dh, d) * 0.02 / math.sqrt(2 * cfg.n_layers))
        self.register_buffer("causal", torch.tril(torch.ones(N_POSITIONS, N_POSITIONS, dtype=torch.bool)))
        # (h, T, T) edges allowed to open: all causal pairs until the circuit's edge set is frozen
        # (freeze_edge_set), so later training phases cannot grow the circuit
        self.register_buffer("open_edges", self.causal.expand(h, -1, -1).clone())

    def forward(self, x: torch.Tensor, gate_mode: str, allowed: torch.Tensor | None = None,
                keys_values: torch.Tensor | None = None):
        """x (B, T, d) -> (y (B, T, d), gates (B, h, T, T) or None, expected density scalar or None).

        `allowed` (B, h, T, T) bool (hard gates only): gates it marks false are closed (ablation).
        `keys_values` (B, T, d): what keys and values are computed from instead of x (the
        faithfulness check randomises it outside the circuit's cone); queries always come from x."""
        B, T, d = x.shape
        if keys_values is None:
            # one matmul for all heads' q, k, v: (d, 3 * h * dh) built from the per-head weights
            w = torch.stack([self.W_Q, self.W_K, self.W_V]).permute(2, 0, 1, 3).reshape(d, -1)
            qkv = (x @ w).view(B, T, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # (3, B, h, T, dh)
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q, k, v = (torch.einsum("btd,hde->bhte", inp, w) for inp, w in
                       ((x, self.W_Q), (keys_values, self.W_K), (keys_values, self.W_V)))
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # (B, h, T, T): a_ij
        causal = self.causal[:T, :T]
        weights = F.softmax(logits.masked_fill(~causal, float("-inf")), dim=-1)
        gates, density = None, None
        if gate_mode != "off":
            g = logits + self.gate_bias
            if gate_mode == "sample":
                gates = logistic_gate(g)
            elif gate_mode == "polish":  # the inference gate's values, trained through sigmoid(g)
                gates = straight_through((g > 0).to(x.dtype), torch.sigmoid(g))
            else:
                gates = (g > 0).to(x.dtype)
            gates = gates * (causal & self.open_edges[:, :T, :T])
            if allowed is not None:
                gates = gates * allowed[:, :, :T, :T]
            if self.gate_rule == RENORMALISED_RULE:
                weights = renormalised_weights(logits, gates)
            else:
                weights = weights * gates  # the paper's rule, no renormalisation: kept weights sum to <= 1
            density = (torch.sigmoid(g) * causal).sum() / (g.shape[0] * g.shape[1] * causal.sum())
        y = (weights @ v).transpose(1, 2).reshape(B, T, -1) @ self.W_O.reshape(-1, d)  # (B, T, d)
        return y, gates, density


class GatedMLP(nn.Module):
    """GELU MLP whose hidden neurons each carry an input-independent gate logit phi_n."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.d_mlp)
        self.proj = nn.Linear(cfg.d_mlp, cfg.d_model)
        self.neuron_logits = nn.Parameter(torch.full((cfg.d_mlp,), 3.0))  # start open: sigmoid(3) = 0.95

    def forward(self, x: torch.Tensor, gate_mode: str):
        h = F.gelu(self.fc(x))  # (B, T, d_mlp)
        density = None
        if gate_mode == "sample":
            h = h * logistic_gate(self.neuron_logits)
            density = torch.sigmoid(self.neuron_logits).mean()
        elif gate_mode == "hard":
            h = h * self.neuron_mask().to(h.dtype)
        return self.proj(h), density

    def neuron_mask(self) -> torch.Tensor:
        return self.neuron_logits > 0


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model)
        self.attn = GatedSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model)
        self.mlp = GatedMLP(cfg)


class AdderTransformer(nn.Module):
    """Token + learned position embeddings, n_layers blocks, final LayerNorm, tied-free unembedding."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(VOCAB_SIZE, cfg.d_model)
        self.pos_emb = nn.Embedding(N_POSITIONS, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.unembed = nn.Linear(cfg.d_model, VOCAB_SIZE, bias=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=0.02)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, tokens: torch.Tensor, attn_gates: str = "off", neuron_gates: str = "off", allowed=None):
        """tokens (B, T) -> logits (B, T, vocab), per-layer gates, attention density, neuron density.

        `allowed`: per layer (B, h, T, T) bool, gates that may open (see GatedSelfAttention)."""
        return self.forward_from(self.embed(tokens), 0, attn_gates, neuron_gates, allowed)

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """The residual stream entering block 0: (B, T) -> (B, T, d)."""
        return self.tok_emb(tokens) + self.pos_emb.weight[:tokens.shape[1]]

    def run_blocks(self, x: torch.Tensor, first: int, last: int, attn_gates: str, neuron_gates: str,
                   allowed=None):
        """Blocks first..last-1 on the residual x -> (x, their gates, attention and neuron densities)."""
        all_gates, attn_density, neuron_density = [], [], []
        for l in range(first, last):
            block = self.blocks[l]
            y, gates, density = block.attn(block.ln_1(x), attn_gates, None if allowed is None else allowed[l])
            x = x + y
            m, n_density = block.mlp(block.ln_2(x), neuron_gates)
            x = x + m
            all_gates.append(gates)
            attn_density.append(density)
            neuron_density.append(n_density)
        return x, all_gates, attn_density, neuron_density

    def forward_from(self, x: torch.Tensor, first: int, attn_gates: str = "off", neuron_gates: str = "off",
                     allowed=None):
        """forward() resumed at block `first` with its input residual x (pruning reuses the layers before)."""
        x, all_gates, attn_density, neuron_density = self.run_blocks(x, first, len(self.blocks),
                                                                     attn_gates, neuron_gates, allowed)
        logits = self.unembed(self.ln_f(x))
        attn_d = torch.stack(attn_density).mean() if attn_gates != "off" else None
        neuron_d = torch.stack(neuron_density).mean() if neuron_gates == "sample" else None
        return logits, all_gates, attn_d, neuron_d


def set_gate_rule(model: "AdderTransformer", rule: str) -> None:
    """Switch every attention layer (and the recorded config) to the gate rule `rule`."""
    assert rule in GATE_RULES, f"unknown gate rule {rule!r}"
    model.cfg = replace(model.cfg, gate_rule=rule)
    for block in model.blocks:
        block.attn.gate_rule = rule


@torch.no_grad()
def freeze_edge_set(model: "AdderTransformer", gates: list[torch.Tensor]) -> None:
    """Allow from now on only the edges active somewhere in `gates` (per layer, (N, h, T, T))."""
    for block, layer_gates in zip(model.blocks, gates):
        used = layer_gates.bool().any(dim=0)  # (h, T, T)
        T = used.shape[-1]
        block.attn.open_edges.zero_()
        block.attn.open_edges[:, :T, :T] = used


def load_state(model: AdderTransformer, state: dict) -> AdderTransformer:
    """load_state_dict that also takes states saved before open_edges existed (every edge open)."""
    state = dict(state)
    for name, buffer in model.state_dict().items():
        if name.endswith("open_edges"):
            state.setdefault(name, buffer)
    model.load_state_dict(state)
    return model


def save_checkpoint(model: AdderTransformer, path, gated: bool, extra: dict | None = None) -> None:
    """The checkpoint carries the config that made it (and whether its gates are in use)."""
    torch.save({"config": asdict(model.cfg), "gated": gated, "state_dict": model.state_dict(),
                "extra": extra or {}}, path)


def load_checkpoint(path) -> AdderTransformer:
    """Rebuild a model from save_checkpoint's file; `model.gated` tells which gate mode it serves with."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = AdderTransformer(ModelConfig(**blob["config"]))
    load_state(model, blob["state_dict"])
    model.gated = blob["gated"]
    return model.eval()
