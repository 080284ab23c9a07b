"""What a renormalised sparse build must compute: per layer, only what the circuit's edges read.

Under the renormalised rule row i of a layer reads the keys and values of its circuit edges' keys and
nothing else (a closed edge is out of the softmax; a key outside the circuit never opens). So, from
the answers downwards:
  * a row whose attention output is read later needs q_i, and k_j and v_j of its edges' keys;
  * a row whose output is not read but whose gates the `edges` output reports needs q_i and k_j only;
  * a position's MLP runs only where its residual is read after the layer.
Pure: (circuit edges, layers, predicting positions) in, a plan with named fields out. compile.py still
uses the paper rule's superset (every causal key of a live row); switching it over is #20's next step.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ConePlan:
    answer_rows: list[set[int]]  # per layer, query rows whose attention output a later layer or answer reads
    gate_rows: list[set[int]]  # per layer, further rows computed only to report their edges' gates
    row_keys: list[dict[int, set[int]]]  # per layer, row -> the keys of its circuit edges (any head)
    key_positions: list[set[int]]  # per layer, positions whose keys are computed
    value_positions: list[set[int]]  # per layer, positions whose values are computed (keys of answer rows)
    need_after: list[set[int]]  # per layer, positions whose residual is read after it: the MLP runs only there
    need_before: list[set[int]]  # per layer, positions whose residual input the layer reads

    def cells(self) -> int:
        """(layer, position) residual inputs computed: the plan's size, comparable across rules."""
        return sum(len(p) for p in self.need_before)


def cone_plan(edges, n_layers: int, predicting: range, report_gates: bool = True) -> ConePlan:
    """The plan for circuit `edges` (layer, head, query, key); without `report_gates`, only what the
    answers read (the edge cone of circuit.edge_cone)."""
    per_layer: list[dict[int, set[int]]] = [{} for _ in range(n_layers)]
    for layer, _, query, key in edges:
        per_layer[layer].setdefault(query, set()).add(key)
    needed = set(predicting)
    plan = {name: [None] * n_layers for name in ConePlan.__dataclass_fields__}
    for layer in reversed(range(n_layers)):
        rows = per_layer[layer]
        answer_rows = {q for q in rows if q in needed}
        gate_rows = set(rows) - answer_rows if report_gates else set()
        values = set().union(*(rows[q] for q in answer_rows))
        keys = values.union(*(rows[q] for q in gate_rows))
        plan["answer_rows"][layer], plan["gate_rows"][layer] = answer_rows, gate_rows
        plan["row_keys"][layer] = {q: rows[q] for q in answer_rows | gate_rows}
        plan["key_positions"][layer], plan["value_positions"][layer] = keys, values
        plan["need_after"][layer] = set(needed)
        needed = needed | gate_rows | keys
        plan["need_before"][layer] = set(needed)
    return ConePlan(**plan)
