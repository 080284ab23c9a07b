"""The compile's bookkeeping: the graph's constants (and what they cost), the per-layer KV cache, and
the small helpers every part of the graph uses."""

import numpy as np

from export.onnx_builder import GraphBuilder


def as_numpy(tensor) -> np.ndarray:
    return tensor.detach().numpy().astype(np.float32)


def select(graph: GraphBuilder, x: str, source: list[int], wanted: list[int], axis: int) -> str:
    """The positions `wanted` (each in `source`, the order of axis `axis` of x) out of x."""
    if wanted == source:
        return x
    indices = np.array([source.index(p) for p in wanted], np.int64)
    return graph.op("Gather", [x, graph.const(indices)], axis=axis)


def node_name(layer: int, what: str, positions) -> str:
    return f"layer{layer}.{what}@{','.join(str(p) for p in positions)}"


class Constants:
    """Each initializer added once under its key; counts the model's weights kept and the table elements."""

    def __init__(self, graph: GraphBuilder):
        self.graph = graph
        self.names: dict[str, str] = {}
        self.parameters_kept = 0  # elements of the model's own weights the graph holds
        self.table_elements = 0  # elements of precomputed per-(position, token) tables

    def weight(self, key: str, array: np.ndarray) -> str:
        return self._add(key, array, parameters=array.size, table=0)

    def table(self, key: str, array: np.ndarray) -> str:
        return self._add(key, array, parameters=0, table=array.size)

    def folded(self, key: str, array: np.ndarray, parameters: int) -> str:
        """A table that folds `parameters` model weights (the embeddings): counted as those weights."""
        return self._add(key, array, parameters=parameters, table=0)

    def _add(self, key: str, array: np.ndarray, parameters: int, table: int) -> str:
        if key not in self.names:
            self.names[key] = self.graph.const(array, key.replace(".", "_"))
            self.parameters_kept += parameters
            self.table_elements += table
        return self.names[key]


class KVCache:
    """Per layer: keys and values (N, 1, P, heads, d_head) of the positions computed so far that a later
    row reads, in the order appended; and the single-head values (N, 1, d_head) copy rows take."""

    def __init__(self, graph: GraphBuilder, n_layers: int):
        self.graph = graph
        self.keys: list[str | None] = [None] * n_layers
        self.values: list[str | None] = [None] * n_layers
        self.key_positions: list[list[int]] = [[] for _ in range(n_layers)]
        self.value_positions: list[list[int]] = [[] for _ in range(n_layers)]
        self.copy_values: dict[tuple[int, int, int], str] = {}  # (layer, key, head) -> (N, 1, d_head)

    def add_keys(self, layer: int, keys: str, positions: list[int]) -> None:
        self.keys[layer] = self._append(self.keys[layer], keys, axis=2)
        self.key_positions[layer] += positions

    def add_values(self, layer: int, values: str, positions: list[int]) -> None:
        self.values[layer] = self._append(self.values[layer], values, axis=2)
        self.value_positions[layer] += positions

    def _append(self, cache: str | None, new: str, axis: int) -> str:
        return new if cache is None else self.graph.op("Concat", [cache, new], axis=axis)
