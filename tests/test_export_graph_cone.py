"""The committed sparse graph computes nothing outside what its circuit reads, read from the graph itself.

compile.py names each node that computes keys, values, queries or an MLP `layer{l}.{what}@{positions}`.
The bound below is derived from circuit.json's edges alone (not from the compiler's plan): at layer l
  * keys and queries only at the keys and query rows of the layer's circuit edges;
  * values only at the keys of edges whose query row something later reads;
  * an MLP only at positions something later reads: an answer, or any edge of a later layer.
The dense graph breaks that bound, so the test can fail.
"""

import re

import onnx
import pytest

from contract import CIRCUIT_FILE, DENSE_MODEL, MANIFEST_FILE, SPARSE_MODEL, model_dir
from contract.circuit import read_circuit
from export.task import N_POSITIONS, PREDICT_FROM
from export_support import REAL_REPOSITORY

pytestmark = pytest.mark.skipif(not (REAL_REPOSITORY / SPARSE_MODEL).is_dir(),
                                reason=f"no model repository at {REAL_REPOSITORY}")
NAMED = re.compile(r"layer(\d+)\.(keys|values|values\.head\d+|queries|mlp)@([\d,]+)$")


def computed_positions(name: str) -> dict[tuple[int, str], set[int]]:
    """(layer, what) -> positions, from the named nodes of a committed graph."""
    import json
    folder = model_dir(REAL_REPOSITORY, name)
    graph = onnx.load(folder / json.loads((folder / MANIFEST_FILE).read_text())["file"]).graph
    found: dict[tuple[int, str], set[int]] = {}
    for node in graph.node:
        match = NAMED.match(node.name)
        if match:
            what = "values" if match[2].startswith("values") else match[2]
            found.setdefault((int(match[1]), what), set()).update(int(p) for p in match[3].split(","))
    return found


def read_bound(edges: list[tuple[int, int, int, int]], n_layers: int) -> dict[tuple[int, str], set[int]]:
    """(layer, what) -> the positions the circuit's edges read there."""
    bound = {}
    for layer in range(n_layers):
        later = set(range(PREDICT_FROM, N_POSITIONS)).union(
            *({query, key} for edge_layer, _, query, key in edges if edge_layer > layer))
        here = [(query, key) for edge_layer, _, query, key in edges if edge_layer == layer]
        bound[(layer, "keys")] = {key for _, key in here}
        bound[(layer, "queries")] = {query for query, _ in here}
        bound[(layer, "values")] = {key for query, key in here if query in later}
        bound[(layer, "mlp")] = later
    return bound


def circuit_edges(name: str):
    circuit = read_circuit(model_dir(REAL_REPOSITORY, name) / CIRCUIT_FILE)
    return circuit.edge_tuples(), circuit.n_layers


def test_the_sparse_graph_computes_only_what_its_circuit_reads():
    edges, n_layers = circuit_edges(SPARSE_MODEL)
    computed, bound = computed_positions(SPARSE_MODEL), read_bound(edges, n_layers)
    assert computed, "no named node: the test would pass vacuously"
    outside = {where: sorted(positions - bound[where]) for where, positions in computed.items()
               if positions - bound[where]}
    assert outside == {}, f"computed outside the circuit's reads: {outside}"


def test_the_dense_graph_computes_outside_the_sparse_circuits_reads():
    edges, n_layers = circuit_edges(SPARSE_MODEL)
    bound = read_bound(edges, n_layers)
    dense = computed_positions(DENSE_MODEL)
    assert any(positions - bound.get(where, set()) for where, positions in dense.items())
