"""The gates a compiled sparse graph computes, and its `edges` output: every circuit edge's gate, in order."""

import numpy as np

from contract import INPUT_EDGE_MASK
from export.onnx_builder import BOOL, GraphBuilder


class EdgeGates:
    """Emits A_ij = 1[a_ij + b > 0] within the circuit and collects the columns of the `edges` output.

    `closable` graphs (explain.onnx) AND each gate with its `edge_mask` input column."""

    def __init__(self, graph: GraphBuilder, edges: list[tuple[int, int, int, int]], closable: bool, zeros: str):
        self.graph, self.closable, self.zeros = graph, closable, zeros
        self.union = set(edges)
        self.edge_index = {edge: i for i, edge in enumerate(edges)}
        self.columns: list[tuple[str, list]] = []  # (N, k) bool tensors and, per column, its edge id or None
        self.always_open = graph.op("Equal", [zeros, zeros])  # (N, 1) true: the gate of a copy row's edge

    def gate(self, layer: int, heads: tuple[int, ...], bias: float, logits: str, rows: list[int],
             keys: list[int]) -> str:
        """(N, rows, keys, heads) bool open gates of the circuit's edges among `logits`; reports them."""
        graph = self.graph
        union = np.array([[[(layer, h, q, k) in self.union for h in heads] for k in keys] for q in rows])
        open_ = graph.op("Greater", [logits, graph.const(np.array(-bias, np.float32))])
        open_ = graph.op("And", [open_, graph.const(union)])
        flat = np.flatnonzero(union)
        if len(flat):
            row_i, key_i, head_i = np.unravel_index(flat, union.shape)
            ids = [self.edge_index[(layer, heads[c], rows[a], keys[b])] for a, b, c in zip(row_i, key_i, head_i)]
            if self.closable:
                open_ = graph.op("And", [open_, self.edge_mask(union.shape, flat, ids)])
            # every gate of the block, flattened; output() picks the circuit's columns in one Gather
            by_column = [None] * union.size
            for column, edge_id in zip(flat, ids):
                by_column[column] = edge_id
            self.columns.append((graph.op("Reshape", [open_, graph.const(np.array([0, -1]))]), by_column))
        return open_

    def edge_mask(self, shape: tuple, flat: np.ndarray, ids: list[int]) -> str:
        """(N, rows, keys, heads) bool: at the circuit edges' flat positions their `edge_mask` columns
        (elsewhere any column: the union constant has closed those already)."""
        columns = np.zeros(int(np.prod(shape)), np.int64)
        columns[flat] = ids
        picked = self.graph.op("Gather", [INPUT_EDGE_MASK, self.graph.const(columns)], axis=1)  # (N, prod)
        return self.graph.op("Reshape", [picked, self.graph.const(np.array([-1, *shape]))])

    def always(self, edge: tuple[int, int, int, int]) -> None:
        """An edge open on every problem (a copy row's): its column is constant true."""
        self.columns.append((self.always_open, [self.edge_index[edge]]))

    def looked_up(self, layer: int, heads: list[int], table: str, index: str) -> None:
        """Position 0's gates on itself, from its (position, token) table (its only key is itself)."""
        columns = self.graph.op("Gather", [table, index], axis=0)
        columns = self.graph.op("Reshape", [columns, self.graph.const(np.array([0, -1]))])  # (N, k)
        self.columns.append((columns, [self.edge_index[(layer, h, 0, 0)] for h in heads]))

    def output(self) -> str:
        """(N, E) bool: every circuit edge's gate, in the circuit's edge order."""
        graph, n_edges = self.graph, len(self.edge_index)
        order = [edge_id for _, ids in self.columns for edge_id in ids]  # an edge id (or None) per column
        if sorted(i for i in order if i is not None) != list(range(n_edges)):
            raise ValueError(f"the graph computes gates for edges {order}, not each of the {n_edges} once")
        if not self.columns:  # a circuit with no edge at all: an (N, 0) output
            empty = graph.op("Slice", [self.zeros, *(graph.const(np.array([v])) for v in (0, 0, 1))])
            return graph.op("Cast", [empty], to=BOOL)
        tensors = [tensor for tensor, _ in self.columns]
        joined = tensors[0] if len(tensors) == 1 else graph.op("Concat", tensors, axis=1)
        picks = np.array([order.index(i) for i in range(n_edges)], np.int64)
        return graph.op("Gather", [joined, graph.const(picks)], axis=1)
