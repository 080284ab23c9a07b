"""What each layer of a build must compute, derived from its circuit's edges: a pure liveness plan.

Walking down from the predicting positions, per layer:
  * answer rows: query rows whose attention output a later layer or an answer reads;
  * gate rows: other rows with circuit edges, computed only so the `edges` output reports their gates;
  * copy rows (renormalised rule, answer rows whose one edge is open on every problem): the softmax
    over a single open edge is 1, so the row takes that key's value with no query, key or softmax;
  * key and value positions: under the renormalised rule a row reads the keys and values of its own
    circuit edges and nothing else (a closed edge leaves its softmax); under the paper's rule (and the
    dense build) the softmax denominator sums every causal key, so a row needs all earlier keys;
  * a position's residual (hence its MLP) is kept after a layer only where something later reads it.
Positions with no row at any layer never read another token: the compile turns them into lookups.
"""

from dataclasses import dataclass

RENORMALISED = "renormalised"  # export.model.RENORMALISED_RULE (kept import-free: this module is pure)


@dataclass(frozen=True)
class LayerPlan:
    heads: tuple[int, ...]  # heads of the softmax rows' circuit edges (a copy row carries its own)
    answer_rows: frozenset[int]  # computed through the softmax, output read later
    gate_rows: frozenset[int]  # query and gates only: the output is read by nothing
    copy_rows: dict  # row -> (head, key): output = that key's value through W_O, no softmax
    row_keys: dict  # row -> frozenset of the keys of its circuit edges (any head)
    key_positions: frozenset[int]  # keys computed (the softmax rows read them)
    value_positions: frozenset[int]  # values computed (the answer rows read them)
    copy_sources: frozenset  # (key, head) whose value a copy row takes
    need_after: frozenset[int]  # residuals read after this layer: the MLP runs only there
    need_before: frozenset[int]  # residual inputs this layer reads

    def softmax_rows(self) -> frozenset[int]:
        """Rows whose logits are computed: the answer rows that are no copy, and the gate rows."""
        return (self.answer_rows - self.copy_rows.keys()) | self.gate_rows

    def rows(self) -> frozenset[int]:
        return self.answer_rows | self.gate_rows


@dataclass(frozen=True)
class LivenessPlan:
    layers: tuple[LayerPlan, ...]
    lookups: frozenset[int]  # positions that read no other token: table lookups

    def cells(self) -> int:
        """(layer, position) residual inputs read: the plan's size, comparable across rules."""
        return sum(len(layer.need_before) for layer in self.layers)

    def cone(self) -> list[set[int]]:
        """Per layer, the positions whose residual input is read."""
        return [set(layer.need_before) for layer in self.layers]


def plan_liveness(edges, n_layers: int, predicting: range, rule: str, always_open=frozenset(),
                  report_gates: bool = True, closable: bool = False) -> LivenessPlan:
    """The plan for circuit `edges` (layer, head, query, key) under gate `rule`.

    `always_open`: edges open on every problem of the domain (copy rows need them). `report_gates`:
    rows whose output nobody reads are still computed, for the `edges` output. `closable` (a graph with
    an `edge_mask` input): no copy rows and no lookup at position 0, since both fix a gate open or shut.
    """
    per_layer = [_rows_of_layer(edges, layer) for layer in range(n_layers)]
    needed, layers = set(predicting), []
    for layer in reversed(range(n_layers)):
        copyable = {edge for edge in always_open if edge[0] == layer} if not closable else set()
        plan = _layer_plan(per_layer[layer], needed, rule, copyable, report_gates)
        layers.insert(0, plan)
        needed = set(plan.need_before)
    with_rows = set().union(*(layer.rows() for layer in layers))
    lookups = {0} if not closable else set()
    # a row at position 0 reads only position 0: its lookup table attends it to itself
    lookups |= {p for p in range(predicting.stop) if p not in with_rows}  # the last predicting position is the last fed
    return LivenessPlan(tuple(layers), frozenset(lookups))


def _rows_of_layer(edges, layer: int) -> dict[int, dict[int, set[int]]]:
    """row -> head -> keys of the layer's circuit edges."""
    rows: dict[int, dict[int, set[int]]] = {}
    for edge_layer, head, query, key in edges:
        if edge_layer == layer:
            rows.setdefault(query, {}).setdefault(head, set()).add(key)
    return rows


def _layer_plan(rows: dict, needed: set[int], rule: str, always_open: set, report_gates: bool) -> LayerPlan:
    """One layer's plan; `always_open`: this layer's edges (layer, head, query, key) open on every problem."""
    answer_rows = {q for q in rows if q in needed}
    gate_rows = set(rows) - answer_rows if report_gates else set()
    row_keys = {q: frozenset().union(*rows[q].values()) for q in answer_rows | gate_rows}
    always_open_rows = {(query, (head, key)) for _, head, query, key in always_open}
    # row 0 reads only itself: its lookup table (or, closable, its own softmax) already does
    copy_rows = {q: _single_edge(rows[q]) for q in answer_rows if rule == RENORMALISED and q != 0
                 and (q, _single_edge(rows[q])) in always_open_rows}
    softmax_answers = answer_rows - copy_rows.keys()
    values = set().union(*(row_keys[q] for q in softmax_answers))
    if rule == RENORMALISED:
        keys = values.union(*(row_keys[q] for q in gate_rows))
    else:  # the denominator of every softmax answer row sums all its causal keys
        keys = set(range(max(softmax_answers) + 1)) if softmax_answers else set()
        keys |= set().union(*(row_keys[q] for q in gate_rows))
    sources = {(key, head) for head, key in copy_rows.values()}
    heads = {h for q in softmax_answers | gate_rows for h in rows[q]}
    need_before = set(needed) | gate_rows | keys | {key for key, _ in sources}
    return LayerPlan(tuple(sorted(heads)), frozenset(answer_rows), frozenset(gate_rows), copy_rows, row_keys,
                     frozenset(keys), frozenset(values), frozenset(sources), frozenset(needed),
                     frozenset(need_before))


def _single_edge(heads: dict[int, set[int]]):
    """(head, key) of a row with exactly one circuit edge, else None."""
    pairs = [(head, key) for head, keys in heads.items() for key in keys]
    return pairs[0] if len(pairs) == 1 else None
