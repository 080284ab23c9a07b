"""adder.v1.Adder on the fixture repository: sums, answers, traces, circuits and the model list."""

import numpy as np

from fixtures.fakes import HANG_S
from fixtures.service_repository import SPARSE_EDGES, fixture_active_edges
from service.generated.adder.v1 import adder_pb2


def edges_of(response) -> list[tuple[int, int, int, int]]:
    return [(e.layer, e.head, e.query, e.key) for e in response.edges]


def test_add_defaults_to_the_sparse_model(stubs):
    response = stubs.adder.Add(adder_pb2.AddRequest(a=36, b=28), timeout=HANG_S)
    assert (response.sum, response.answer, response.model, response.model_version) == (64, "00064", "adder-sparse", "1")
    assert not response.edges  # no trace asked


def test_add_dense_and_extremes(stubs):
    for a, b in ((0, 0), (99, 99), (50, 50), (9, 1)):
        response = stubs.adder.Add(adder_pb2.AddRequest(a=a, b=b, model="adder-dense"), timeout=HANG_S)
        assert response.sum == a + b and response.answer == f"{a + b:05d}" and response.model == "adder-dense"


def test_trace_lists_the_edges_active_for_this_problem(stubs):
    for a, b in ((36, 28), (12, 3), (50, 50), (0, 0)):
        response = stubs.adder.Add(adder_pb2.AddRequest(a=a, b=b, trace=True), timeout=HANG_S)
        assert edges_of(response) == fixture_active_edges(a, b)
    # Carry and no-carry problems use different circuits.
    assert fixture_active_edges(36, 28) != fixture_active_edges(12, 3)


def test_dense_trace_is_every_causal_edge(stubs):
    response = stubs.adder.Add(adder_pb2.AddRequest(a=1, b=2, model="adder-dense", trace=True), timeout=HANG_S)
    assert len(response.edges) == 2 * 2 * 55
    assert all(e.key <= e.query for e in response.edges)


def test_add_batch_answers_all_10000_in_order(stubs):
    values = np.arange(100)
    a, b = (x.ravel().tolist() for x in np.meshgrid(values, values, indexing="ij"))
    for model in ("adder-sparse", "adder-dense"):
        response = stubs.adder.AddBatch(adder_pb2.AddBatchRequest(a=a, b=b, model=model), timeout=HANG_S)
        assert list(response.sums) == [x + y for x, y in zip(a, b)]
        assert list(response.answers) == [f"{x + y:05d}" for x, y in zip(a, b)]


def test_get_circuit_reports_the_circuit(stubs):
    circuit = stubs.adder.GetCircuit(adder_pb2.GetCircuitRequest(model="adder-sparse"), timeout=HANG_S)
    assert [(e.edge.layer, e.edge.head, e.edge.query, e.edge.key) for e in circuit.edges] == \
        [e[:4] for e in SPARSE_EDGES]
    assert (circuit.n_layers, circuit.n_heads, circuit.n_positions, circuit.domain_size) == (2, 2, 10, 10_000)
    assert circuit.possible_edges_per_problem == 220 and 0 < circuit.density < 0.05
    assert circuit.edges_per_problem.min == 4 and circuit.edges_per_problem.max == 5
    assert [(h.layer, h.head) for h in circuit.dead_heads] == [(1, 1)]
    assert (circuit.parameters_total, circuit.parameters_kept) == (1000, 250)
    assert circuit.accuracy.correct == 10_000 and len(circuit.sha256) == 64
    assert circuit.training["config"]["fixture"] is True
    assert max(e.frequency for e in circuit.edges) == 1.0


def test_list_models_reports_readiness_and_sizes(stubs):
    models = {m.name: m for m in stubs.adder.ListModels(adder_pb2.ListModelsRequest(), timeout=HANG_S).models}
    assert list(models) == ["adder-dense", "adder-sparse"]
    for m in models.values():
        assert m.ready and m.state == "READY" and m.size_bytes > 0 and len(m.sha256) == 64
        assert m.self_test_correct == 10_000 and not m.reason
    assert models["adder-sparse"].circuit_edges == len(SPARSE_EDGES)
    assert models["adder-sparse"].parameters_kept < models["adder-dense"].parameters_kept
