"""One layer's attention in the compiled graph, for the rows, keys and values the liveness plan lists.

Nodes that compute keys, values, queries and MLPs are named `layer{l}.{what}@{positions}`
(compile_parts.node_name), so a test can read from the graph itself which positions each layer computes.
"""

import numpy as np

from export.circuit import Circuit
from export.compile_gates import EdgeGates
from export.compile_inputs import ResidualInputs, TableInputs
from export.compile_parts import Constants, KVCache, as_numpy, select
from export.liveness import RENORMALISED, LivenessPlan
from export.model import AdderTransformer
from export.onnx_builder import GraphBuilder
from export.tables import PositionTables

NEG_INF = np.float32(-np.inf)


class AttentionEmitter:
    """Emits attention layer by layer into `graph`; collects the `edges` output's gate columns."""

    def __init__(self, graph: GraphBuilder, model: AdderTransformer, circuit: Circuit, plan: LivenessPlan,
                 constants: Constants, cache: KVCache, gated: bool, closable: bool, zeros: str):
        self.graph, self.model, self.plan, self.constants, self.cache = graph, model, plan, constants, cache
        self.gated, self.closable, self.zeros = gated, closable, zeros
        self.renormalised = gated and model.cfg.gate_rule == RENORMALISED
        self.gates = EdgeGates(graph, circuit.edge_tuples(), closable, zeros)

    # ---- weights ---------------------------------------------------------------------------
    def layer_norm(self, x: str, norm, key: str) -> str:
        weight = self.constants.weight(f"{key}.w", as_numpy(norm.weight))
        bias = self.constants.weight(f"{key}.b", as_numpy(norm.bias))
        return self.graph.op("LayerNormalization", [x, weight, bias], axis=-1, epsilon=norm.eps)

    def head_weights(self, layer: int, which: str) -> str:
        """(d, heads * d_head) W_Q / W_K / W_V of the layer's softmax heads; 1/sqrt(d_head) folded into W_Q."""
        attn = self.model.blocks[layer].attn
        weights = as_numpy(getattr(attn, f"W_{which}"))[list(self.plan.layers[layer].heads)]  # (heads, d, dh)
        if which == "Q":
            weights = weights / np.float32(np.sqrt(attn.d_head))
        return self.constants.weight(f"W_{which}.{layer}", np.concatenate(list(weights), axis=1))

    def out_weights(self, layer: int, heads: list[int]) -> str:
        w_o = as_numpy(self.model.blocks[layer].attn.W_O)[heads]  # (heads, dh, d)
        return self.constants.weight(f"W_O.{layer}.{heads}", np.concatenate(list(w_o), axis=0))

    def split_heads(self, x: str, n: int, layer: int, cached: bool) -> str:
        """(N, n, heads * d_head) -> (N, 1, n, heads, d_head) for the caches, (N, n, 1, heads, d_head) for queries.

        Attention is then elementwise Mul and ReduceSum over broadcast axes, not a batched MatMul:
        per problem the products are 1 x 16 by 16 x 4, and ORT's batched MatMul over 1,024 of those
        took most of the graph's time (measured: MatMul was 63% of kernel time at batch 1,024)."""
        heads, d_head = len(self.plan.layers[layer].heads), self.model.blocks[layer].attn.d_head
        shape = [-1, 1, n, heads, d_head] if cached else [-1, n, 1, heads, d_head]
        return self.graph.op("Reshape", [x, self.graph.const(np.array(shape))])

    # ---- where queries, keys and values come from -------------------------------------------
    def from_residual(self, layer: int, x: str, positions: list[int]) -> ResidualInputs:
        return ResidualInputs(self, layer, self.layer_norm(x, self.model.blocks[layer].ln_1, f"ln1.{layer}"),
                              positions)

    def from_tables(self, layer: int, tables: PositionTables, index: str, positions: list[int]) -> TableInputs:
        return TableInputs(self, layer, tables.attn_inputs[layer], index, positions)

    def cache_inputs(self, layer: int, inputs) -> None:
        """Append the keys, values and copy values of `inputs`' positions that the layer's rows read."""
        plan = self.plan.layers[layer]
        keys = [p for p in inputs.positions if p in plan.key_positions]
        if keys:
            self.cache.add_keys(layer, inputs.keys(keys), keys)
        values = [p for p in inputs.positions if p in plan.value_positions]
        if values:
            self.cache.add_values(layer, inputs.values(values), values)
        for key, head in sorted(plan.copy_sources):
            if key in inputs.positions:
                self.cache.copy_values[(layer, key, head)] = inputs.copy_value(key, head)

    def looked_up(self, layer: int, tables: PositionTables, index: str, positions: list[int]) -> None:
        """Positions that read no other token: their keys and values (and position 0's gates) from tables."""
        self.cache_inputs(layer, self.from_tables(layer, tables, index, positions))
        heads = [h for h in range(self.model.cfg.n_heads) if (layer, h, 0, 0) in self.gates.union]
        if self.gated and 0 in positions and heads:  # position 0's gates on itself, looked up
            table = self.constants.table(f"table.gate.{layer}", tables.self_gates[layer][:, heads])
            self.gates.looked_up(layer, heads, table, select(self.graph, index, positions, [0], 1))

    # ---- positions computed from their residual stream --------------------------------------
    def layer(self, layer: int, x: str, x_positions: list[int], tables: PositionTables, index: str) -> tuple[str, list[int]]:
        """x (N, n, d) at x_positions -> the residual after attention at the positions read later.
        At layer 0 a position's attention input is its embedding, a function of its token: looked up."""
        plan, graph = self.plan.layers[layer], self.graph
        keep = [p for p in x_positions if p in plan.need_after]
        rows = [p for p in x_positions if p in plan.softmax_rows()]
        copies = [p for p in x_positions if p in plan.copy_rows]
        reads = plan.key_positions | plan.value_positions | {key for key, _ in plan.copy_sources}
        if not (rows or copies or reads.intersection(x_positions)):
            return select(graph, x, x_positions, keep, 1), keep
        inputs = self.from_tables(layer, tables, index, x_positions) if layer == 0 \
            else self.from_residual(layer, x, x_positions)
        self.cache_inputs(layer, inputs)
        outputs = self.softmax_rows(layer, inputs, rows) if rows else []
        outputs += [([p], self.copy_row(layer, p)) for p in copies]
        x = select(graph, x, x_positions, keep, 1)
        return (self.add_rows(x, keep, outputs) if outputs else x), keep

    def copy_row(self, layer: int, row: int) -> str:
        """(N, 1, d): a row whose one edge is always open takes its key's value (softmax over one edge = 1)."""
        head, key = self.plan.layers[layer].copy_rows[row]
        if self.gated:
            self.gates.always((layer, head, row, key))
        return self.graph.op("MatMul", [self.cache.copy_values[(layer, key, head)], self.out_weights(layer, [head])])

    def add_rows(self, x: str, keep: list[int], outputs: list[tuple[list[int], str]]) -> str:
        """x + each row's attention output at its position (0 at positions without a row)."""
        order = [p for positions, _ in outputs for p in positions]
        tensors = [tensor for _, tensor in outputs]
        y = tensors[0] if len(tensors) == 1 else self.graph.op("Concat", tensors, axis=1)
        if order != keep:  # (|keep|, |order|) 0/1 placement: one MatMul, exact (each sum has one term)
            placement = np.array([[float(p == q) for q in order] for p in keep], np.float32)
            y = self.graph.op("MatMul", [self.graph.const(placement), y])
        return self.graph.op("Add", [x, y])

    def softmax_rows(self, layer: int, inputs, rows: list[int]) -> list:
        plan, graph = self.plan.layers[layer], self.graph
        q = inputs.queries(rows)  # (N, rows, 1, heads, d_head)
        keys = self.cache.key_positions[layer]
        logits = self.reduce(graph.op("Mul", [q, self.cache.keys[layer]]), -1)  # (N, rows, keys, heads)
        bias = self.model.blocks[layer].attn.gate_bias
        open_ = self.gates.gate(layer, plan.heads, bias, logits, rows, keys) if self.gated else None
        answers = [p for p in rows if p in plan.answer_rows]
        if not answers:
            return []
        if self.renormalised:  # softmax over the open edges only; a row with none gives 0 below
            masked = graph.op("Where", [open_, logits, graph.const(NEG_INF)])
        else:
            masked = self.mask_future(logits, rows, keys)
        weights = graph.op("Softmax", [masked], axis=2)
        if self.gated:
            weights = graph.op("Where", [open_, weights, graph.const(np.array(0, np.float32))])
        weights = select(graph, weights, keys, self.cache.value_positions[layer], 2)
        weights = graph.op("Unsqueeze", [weights, graph.const(np.array([-1]))])  # (N, rows, values, heads, 1)
        y = self.reduce(graph.op("Mul", [weights, self.cache.values[layer]]), 2)  # (N, rows, heads, d_head)
        y = select(graph, y, rows, answers, 1)
        y = graph.op("Reshape", [y, graph.const(np.array([0, 0, -1]))])
        return [(answers, graph.op("MatMul", [y, self.out_weights(layer, list(plan.heads))]))]

    def reduce(self, x: str, axis: int) -> str:
        return self.graph.op("ReduceSum", [x, self.graph.const(np.array([axis]))], keepdims=0)

    def mask_future(self, logits: str, rows: list[int], keys: list[int]) -> str:
        """The paper's rule and the dense build: every causal key in the softmax, later keys out."""
        future = np.array([[[key > row] for key in keys] for row in rows])  # (rows, keys, 1)
        if not future.any():
            return logits
        return self.graph.op("Add", [logits, self.graph.const(np.where(future, NEG_INF, 0).astype(np.float32))])
