"""Extract the attention circuit over the whole domain: a pure function of the model's hard gates.

A `Circuit` says which edges, heads, query rows and neurons are ever used on any of the 10,000
problems. Everything it marks dead is structurally zero and compile.py removes it.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from export.model import GATE_RULE, AdderTransformer
from contract import VOCAB
from export.evaluate import greedy_digits
from export.task import ANSWER_START, has_carry, sequences


@dataclass(frozen=True)
class Edge:
    layer: int
    head: int
    query: int
    key: int
    count: int  # problems (of the domain) on which the edge is active ("fires")
    carry_count: int  # of which have a carry
    # Sparse build, from the ablation table (export/ablation.py); absent (None) elsewhere:
    necessary: int | None = None  # problems whose answer changes when this edge alone is closed
    changes_digit: list[int] | None = None  # per answer digit (most significant first): problems it changes


@dataclass(frozen=True)
class Circuit:
    model: str
    n_layers: int
    n_heads: int
    n_positions: int
    tokens: str
    gate_rule: str
    domain_size: int
    possible_edges_per_problem: int
    edges: list[Edge]  # the union over the domain, sorted by (layer, head, query, key)
    edges_per_problem: dict
    density: float  # mean over problems of active / possible edges
    dead_heads: list[list[int]]  # [layer, head] never active
    dead_query_rows: list[list[int]]  # [layer, head, query] never active
    neurons_kept: list[int]
    neurons_total: list[int]
    neuron_masks: list[list[int]]  # kept neuron indices per layer
    live_positions: list[list[int]]  # [layer, position] whose residual input some live path reads
    # Sparse build, from the ablation table (export/ablation.py); absent (None) elsewhere:
    necessary_per_problem: dict | None = None  # edges whose closing changes the answer, like edges_per_problem
    sufficient_per_problem: dict | None = None  # greedy set that keeps the answer right, same shape
    ablation: dict | None = None  # how the table was made and checked

    def to_json(self) -> str:
        return json.dumps(_without_none(asdict(self)), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "Circuit":
        data = json.loads(text)
        data["edges"] = [Edge(**e) for e in data["edges"]]
        return cls(**data)

    def save(self, path: Path) -> None:
        Path(path).write_text(self.to_json())

    def edge_set(self) -> set[tuple[int, int, int, int]]:
        return {(e.layer, e.head, e.query, e.key) for e in self.edges}

    def live_rows(self, layer: int) -> set[int]:
        """Query positions with any live edge at this layer."""
        return {e.query for e in self.edges if e.layer == layer}

    def live_heads(self, layer: int) -> list[int]:
        return sorted({e.head for e in self.edges if e.layer == layer})


def _without_none(value):
    """Optional fields that are None are left out of the JSON (old readers never see them)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _stats(counts: torch.Tensor) -> dict:
    c = counts.float()
    return {"mean": round(c.mean().item(), 4), "min": int(c.min()), "max": int(c.max()), "problems": len(c)}


def problem_stats(per_problem: torch.Tensor, carry: torch.Tensor) -> dict:
    """Mean/min/max of a per-problem count, overall and split by carry."""
    return {**_stats(per_problem), "carry": _stats(per_problem[carry]), "no_carry": _stats(per_problem[~carry])}


def live_positions(n_layers: int, n_positions: int, predicting: range, rows: list[set[int]]) -> list[list[int]]:
    """(layer, position) pairs whose residual input is needed, propagated backwards.

    A live query row needs the keys of *every* causal position at its layer (the softmax is not
    renormalised, so its denominator sums them all), and the residual stream carries each need down
    to every earlier layer; predicting positions are needed everywhere.
    """
    needed = set(predicting)
    out = []
    for layer in reversed(range(n_layers)):
        if rows[layer]:
            needed |= set(range(max(rows[layer]) + 1))
        out += [[layer, p] for p in sorted(needed)]
    return sorted(out)


@torch.no_grad()
def hard_gates(model: AdderTransformer, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, layers, heads, T, T) bool gates of the inference rule on the greedy-decoded sequence.

    The sequence fed back is the model's own answer, as served (for an exact model, the true one).
    """
    tokens = sequences(a, b)
    answer = greedy_digits(model, tokens, gated=True)
    decoded = torch.cat([tokens[:, :ANSWER_START], answer], dim=1)[:, :-1]
    _, gates, _, _ = model(decoded, "hard", "hard")
    return torch.stack(gates, dim=1).bool()


def active_edges(model: AdderTransformer, a: int, b: int) -> list[tuple[int, int, int, int]]:
    """The (layer, head, query, key) edges active when the model adds a + b."""
    g = hard_gates(model, torch.tensor([a]), torch.tensor([b]))[0]
    return [tuple(int(v) for v in idx) for idx in g.nonzero()]


def extract_circuit(model: AdderTransformer, name: str, a: torch.Tensor, b: torch.Tensor,
                    gated: bool, predicting: range) -> Circuit:
    """The circuit of `model` over the problems (a, b); a dense model's gates are all causal pairs."""
    cfg = model.cfg
    T = model.pos_emb.num_embeddings
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    if gated:
        gates = hard_gates(model, a, b)
    else:
        gates = causal.expand(len(a), cfg.n_layers, cfg.n_heads, T, T)
    carry = has_carry(a, b)
    counts = gates.sum(0)  # (layers, heads, T, T)
    carry_counts = gates[carry].sum(0)
    per_problem = gates.flatten(1).sum(1)
    possible = cfg.n_layers * cfg.n_heads * int(causal.sum())
    edges = [Edge(l, h, q, k, int(counts[l, h, q, k]), int(carry_counts[l, h, q, k]))
             for l, h, q, k in counts.nonzero().tolist()]
    rows = [{e.query for e in edges if e.layer == l} for l in range(cfg.n_layers)]
    heads_alive = counts.flatten(2).sum(-1) > 0
    rows_alive = counts.sum(-1) > 0  # (layers, heads, T)
    masks = [torch.ones(cfg.d_mlp, dtype=torch.bool) if not gated else blk.mlp.neuron_mask()
             for blk in model.blocks]
    return Circuit(
        model=name, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_positions=T,
        tokens=VOCAB, gate_rule=GATE_RULE if gated else "dense: every causal pair",
        domain_size=len(a), possible_edges_per_problem=possible, edges=edges,
        edges_per_problem=problem_stats(per_problem, carry),
        density=round(per_problem.float().mean().item() / possible, 6),
        dead_heads=(~heads_alive).nonzero().tolist(),
        dead_query_rows=[[l, h, q] for l, h, q in (~rows_alive).nonzero().tolist()],
        neurons_kept=[int(m.sum()) for m in masks], neurons_total=[cfg.d_mlp] * cfg.n_layers,
        neuron_masks=[m.nonzero().flatten().tolist() for m in masks],
        live_positions=live_positions(cfg.n_layers, T, predicting, rows),
    )
