"""Where one layer's queries, keys and values come from: the residual stream, or per-(position, token) tables."""

import numpy as np

from export.compile_parts import as_numpy, node_name, select


class ResidualInputs:
    """Queries, keys and values computed where they are read: ln_1 of the residual times the head weights."""

    def __init__(self, emitter, layer: int, normed: str, positions: list[int]):
        self.emitter, self.layer, self.normed, self.positions = emitter, layer, normed, positions

    def project(self, wanted: list[int], which: str, what: str) -> str:
        """(N, |wanted|, heads * d_head): computed at `wanted` only."""
        graph = self.emitter.graph
        return graph.op("MatMul", [select(graph, self.normed, self.positions, wanted, 1),
                                   self.emitter.head_weights(self.layer, which)],
                        node_name=node_name(self.layer, what, wanted))

    def keys(self, wanted: list[int]) -> str:
        return self.emitter.split_heads(self.project(wanted, "K", "keys"), len(wanted), self.layer, cached=True)

    def values(self, wanted: list[int]) -> str:
        return self.emitter.split_heads(self.project(wanted, "V", "values"), len(wanted), self.layer, cached=True)

    def queries(self, rows: list[int]) -> str:
        return self.emitter.split_heads(self.project(rows, "Q", "queries"), len(rows), self.layer, cached=False)

    def copy_value(self, key: int, head: int) -> str:
        """(N, 1, d_head): one head's value at `key`."""
        emitter = self.emitter
        w_v = emitter.constants.weight(f"W_V.{self.layer}.{head}",
                                       as_numpy(emitter.model.blocks[self.layer].attn.W_V)[head])
        return emitter.graph.op("MatMul", [select(emitter.graph, self.normed, self.positions, [key], 1), w_v],
                                node_name=node_name(self.layer, f"values.head{head}", [key]))


class TableInputs:
    """Queries, keys and values looked up per (position, token): valid where the attention input is a
    function of the position's own token (layer 0, and every layer of a position that reads no other)."""

    def __init__(self, emitter, layer: int, normed_table: np.ndarray, index: str,
                 positions: list[int]):
        self.emitter, self.layer, self.normed_table = emitter, layer, normed_table  # (T*V, d): ln_1 per row
        self.index, self.positions = index, positions  # (N, n) table rows of `positions`

    def gather(self, table: str, columns: np.ndarray, what: str, wanted: list[int]) -> str:
        """Rows of `table` at the index columns `columns` (their shape leads the result's)."""
        graph = self.emitter.graph
        picked = graph.op("Gather", [self.index, graph.const(columns.astype(np.int64))], axis=1)
        return graph.op("Gather", [table, picked], axis=0, node_name=node_name(self.layer, what, wanted))

    def head_table(self, which: str) -> str:
        """(T*V, heads, d_head) W_which of the layer's softmax heads at every (position, token)."""
        emitter, attn = self.emitter, self.emitter.model.blocks[self.layer].attn
        weights = as_numpy(getattr(attn, f"W_{which}"))[list(emitter.plan.layers[self.layer].heads)]
        if which == "Q":
            weights = weights / np.float32(np.sqrt(attn.d_head))
        table = np.einsum("nd,hde->nhe", self.normed_table, weights).astype(np.float32)
        return emitter.constants.table(f"table.{which}.{self.layer}", table)

    def columns(self, wanted: list[int]) -> np.ndarray:
        return np.array([self.positions.index(p) for p in wanted])

    def keys(self, wanted: list[int]) -> str:  # (1, k) columns: (N, 1, k, heads, d_head) directly
        return self.gather(self.head_table("K"), self.columns(wanted)[None], "keys", wanted)

    def values(self, wanted: list[int]) -> str:
        return self.gather(self.head_table("V"), self.columns(wanted)[None], "values", wanted)

    def queries(self, rows: list[int]) -> str:  # (k, 1) columns: (N, k, 1, heads, d_head)
        return self.gather(self.head_table("Q"), self.columns(rows)[:, None], "queries", rows)

    def copy_value(self, key: int, head: int) -> str:
        attn = self.emitter.model.blocks[self.layer].attn
        table = self.emitter.constants.table(f"table.copy.{self.layer}.{head}",
                                             self.normed_table @ as_numpy(attn.W_V)[head])
        return self.gather(table, self.columns([key]), f"values.head{head}", [key])
