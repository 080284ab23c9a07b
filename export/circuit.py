"""Extract the attention circuit over the whole domain: a pure function of the model's hard gates.

A `Circuit` says which edges, heads, query rows and neurons are ever used on any of the 10,000
problems. Everything it marks dead is structurally zero and compile.py removes it.
"""

import torch

from export.liveness import plan_liveness
from export.model import GATE_RULES, PAPER_RULE, AdderTransformer
from contract import VOCAB
from contract.circuit import Circuit, Edge, EdgesPerProblem, EdgeStats
from export.evaluate import greedy_digits
from export.task import ANSWER_START, has_carry, sequences


def _stats(counts: torch.Tensor) -> EdgeStats:
    c = counts.float()
    return EdgeStats(mean=round(c.mean().item(), 4), min=int(c.min()), max=int(c.max()), problems=len(c))


def problem_stats(per_problem: torch.Tensor, carry: torch.Tensor) -> EdgesPerProblem:
    """Mean/min/max of a per-problem count, overall and split by carry."""
    return EdgesPerProblem(**vars(_stats(per_problem)), carry=_stats(per_problem[carry]),
                           no_carry=_stats(per_problem[~carry]))


def edge_cone(n_layers: int, predicting: range, edges) -> list[set[int]]:
    """Per layer, the positions whose residual input the answers need under the renormalised rule:
    the predicting positions, plus, layer by layer downwards, the keys of the circuit's edges
    (layer, head, query, key) whose query row is needed. Nothing else is read by any answer."""
    needed = set(predicting)
    cone = [set() for _ in range(n_layers)]
    for layer in reversed(range(n_layers)):
        needed |= {key for l, _, query, key in edges if l == layer and query in needed}
        cone[layer] = set(needed)
    return cone


def read_positions(n_layers: int, predicting: range, edges, gate_rule: str) -> list[list[int]]:
    """Sorted [layer, position] pairs whose residual input the answers read under `gate_rule` (the
    liveness plan's cone: the edge cone when renormalised, every earlier key of a read row otherwise)."""
    plan = plan_liveness(edges, n_layers, predicting, gate_rule, report_gates=False)
    return sorted([layer, p] for layer, positions in enumerate(plan.cone()) for p in positions)


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
    heads_alive = counts.flatten(2).sum(-1) > 0
    rows_alive = counts.sum(-1) > 0  # (layers, heads, T)
    masks = [torch.ones(cfg.d_mlp, dtype=torch.bool) if not gated else blk.mlp.neuron_mask()
             for blk in model.blocks]
    return Circuit(
        model=name, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_positions=T,
        tokens=VOCAB, gate_rule=GATE_RULES[cfg.gate_rule] if gated else "dense: every causal pair",
        domain_size=len(a), possible_edges_per_problem=possible, edges=edges,
        edges_per_problem=problem_stats(per_problem, carry),
        density=round(per_problem.float().mean().item() / possible, 6),
        dead_heads=(~heads_alive).nonzero().tolist(),
        dead_query_rows=[[l, h, q] for l, h, q in (~rows_alive).nonzero().tolist()],
        neurons_kept=[int(m.sum()) for m in masks], neurons_total=[cfg.d_mlp] * cfg.n_layers,
        neuron_masks=[m.nonzero().flatten().tolist() for m in masks],
        live_positions=read_positions(cfg.n_layers, predicting, [(e.layer, e.head, e.query, e.key) for e in edges],
                                      cfg.gate_rule if gated else PAPER_RULE),
    )
