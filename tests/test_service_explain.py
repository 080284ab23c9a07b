"""adder.v1 Explain on the fixture repository: which edge the answer needs, errors as Add's, load-time proof."""

import grpc
import pytest

from fixtures.fakes import HANG_S
from fixtures.service_repository import NEEDED_EDGE, SPARSE_EDGES, build_repository, fixture_active_edges, write_model
from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2
from service.cli import main as cli_main

NEEDED = SPARSE_EDGES[NEEDED_EDGE][:4]


def _edge(x) -> tuple[int, int, int, int]:
    return (x.edge.layer, x.edge.head, x.edge.query, x.edge.key)


def test_the_edge_the_answer_needs_is_necessary_and_the_others_are_not(stubs):
    for a, b in ((36, 28), (12, 3), (99, 99), (0, 0)):
        response = stubs.adder.Explain(adder_pb2.ExplainRequest(a=a, b=b), timeout=HANG_S)
        assert (response.sum, response.answer, response.model) == (a + b, f"{a + b:05d}", "adder-sparse")
        assert [_edge(x) for x in response.edges] == fixture_active_edges(a, b)
        for x in response.edges:
            if _edge(x) == NEEDED:  # closing it adds 10: the tens digit (position 3 of 5) changes first
                assert x.necessary and x.sum_without == a + b + 10 and x.answer_without == f"{a + b + 10:05d}"
                assert x.changed_digit == [i for i, (p, q) in enumerate(zip(f"{a + b:05d}", f"{a + b + 10:05d}"))
                                           if p != q][0]
            else:
                assert not x.necessary and x.sum_without == a + b and x.changed_digit == -1
        assert (response.necessary_only_sum, response.necessary_only_right) == (a + b, True)


def test_explain_validates_like_add(stubs):
    cases = [(adder_pb2.ExplainRequest(a=100, b=1), grpc.StatusCode.INVALID_ARGUMENT, "a=100 is out of range"),
             (adder_pb2.ExplainRequest(a=1, b=-1), grpc.StatusCode.INVALID_ARGUMENT, "b=-1 is out of range"),
             (adder_pb2.ExplainRequest(a=1, b=1, model="nope"), grpc.StatusCode.NOT_FOUND, "not found"),
             (adder_pb2.ExplainRequest(a=1, b=1, model="adder-dense"), grpc.StatusCode.FAILED_PRECONDITION,
              "dense build: it has no attention gates to close")]
    for request, code, message in cases:
        with pytest.raises(grpc.RpcError) as caught:
            stubs.adder.Explain(request, timeout=HANG_S)
        assert caught.value.code() == code and message in caught.value.details()


def test_explain_has_its_own_metrics_and_its_rows_are_not_counted_as_answers(server, stubs):
    registry = server.metrics.registry

    def sample(name, **labels):
        return registry.get_sample_value(name, labels) or 0.0

    answers = sample("adder_answers_total", model="adder-sparse", correct="false")
    requests = sample("adder_request_duration_seconds_count", method="Explain", model="adder-sparse", code="OK", protocol="grpc")
    runs = sample("adder_batch_size_count", model="adder-sparse/explain")
    stubs.adder.Explain(adder_pb2.ExplainRequest(a=36, b=28), timeout=HANG_S)
    assert sample("adder_request_duration_seconds_count", method="Explain", model="adder-sparse", code="OK", protocol="grpc") \
        == requests + 1
    assert sample("adder_batch_size_count", model="adder-sparse/explain") == runs + 2  # ablations, necessary only
    assert sample("adder_answers_total", model="adder-sparse", correct="false") == answers


def test_cli_explain_prints_the_table(server, capsys):
    assert cli_main(["explain", "36", "28", "--target", f"127.0.0.1:{server.port}"]) == 0
    out = capsys.readouterr().out
    assert "36 + 28 = 64" in out and "1 necessary" in out
    assert "NECESSARY     00074" in out and "only the 1 necessary edges open: 00064 (right)" in out


@pytest.mark.parametrize("explain, reason", [("bad_sha", "sha256 mismatch"),
                                             ("differs", "with every edge open differs from model.onnx")])
def test_a_bad_explain_graph_fails_the_sparse_model_at_load(tmp_path, explain, reason):
    repository = build_repository(tmp_path)
    write_model(repository, "adder-sparse", explain=explain)
    with running_server(repository) as running, connect(running.port) as client:
        models = {m.name: m for m in client.adder.ListModels(adder_pb2.ListModelsRequest(), timeout=HANG_S).models}
        assert not models["adder-sparse"].ready and reason in models["adder-sparse"].reason
        assert "explain.onnx" in models["adder-sparse"].reason
        assert models["adder-dense"].ready


def test_a_sparse_build_without_explain_graph_says_so(tmp_path):
    repository = build_repository(tmp_path)
    write_model(repository, "adder-sparse", explain="none")
    with running_server(repository) as running, connect(running.port) as client:
        assert client.adder.Add(adder_pb2.AddRequest(a=1, b=2), timeout=HANG_S).sum == 3
        with pytest.raises(grpc.RpcError) as caught:
            client.adder.Explain(adder_pb2.ExplainRequest(a=1, b=2), timeout=HANG_S)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "exported without explain.onnx" in caught.value.details()
