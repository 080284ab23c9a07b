"""HTTP/REST beside gRPC: /v1 answers and errors are gRPC's, status codes are KServe's, and the limits,
deadlines, drain, TLS, metrics and switch-off apply to HTTP as they do to gRPC."""

import asyncio
import http.client
import json
import ssl
import threading
import urllib.parse

import grpc
import pytest

from fixtures.certificates import CertificateAuthority
from fixtures.fakes import HANG_S, eventually
from fixtures.service_repository import SPARSE_EDGES, fixture_active_edges
from fixtures.service_servers import connect, running_server
from service import http_server
from service.generated.adder.v1 import adder_pb2
from service.json_messages import to_json


class Http:
    """A tiny client: one keep-alive connection, answers as (status, JSON or bytes, headers)."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None):
        self.connection = (http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=HANG_S) if context
                           else http.client.HTTPConnection("127.0.0.1", port, timeout=HANG_S))

    def __call__(self, path: str, body=None, headers=None, method=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.connection.request(method or ("POST" if body is not None else "GET"), path, body, headers or {})
        response = self.connection.getresponse()
        data = response.read()
        if response.getheader("Content-Type", "").startswith("application/json"):
            data = json.loads(data)
        return response.status, data, dict(response.getheaders())


@pytest.fixture(scope="module")
def served(fixture_repository):
    with running_server(fixture_repository, http_port=0) as server, connect(server.port) as stubs:
        yield server, Http(server.http_port), stubs


def grpc_error(call, request) -> str:
    with pytest.raises(grpc.RpcError) as error:
        call(request, timeout=HANG_S)
    return error.value.details()


def test_add_answers_as_grpc_does(served):
    server, get, stubs = served
    for a, b, model in ((36, 28, ""), (43, 59, "adder-sparse"), (99, 99, "adder-dense"), (0, 0, "")):
        query = urllib.parse.urlencode({"a": a, "b": b, "trace": 1} | ({"model": model} if model else {}))
        status, body, _ = get(f"/v1/add?{query}")
        expected = stubs.adder.Add(adder_pb2.AddRequest(a=a, b=b, model=model, trace=True), timeout=HANG_S)
        assert status == 200 and body == to_json(expected)
        assert body["answer"] == f"{a + b:05d}"
    status, body, _ = get("/v1/add?a=43&b=59&trace=1")
    assert [tuple(e.values()) for e in body["edges"]] == fixture_active_edges(43, 59)
    assert get("/v1/add?a=43&b=59")[1]["edges"] == []  # no trace asked


def test_add_batch_by_query_and_by_json(served):
    _, get, _ = served
    status, body, _ = get("/v1/add_batch?a=1,2,99&b=3,4,99&model=adder-dense")
    assert status == 200 and body["sums"] == [4, 6, 198] and body["answers"] == ["00004", "00006", "00198"]
    status, body, _ = get("/v1/add_batch", {"a": list(range(100)), "b": list(range(100))})
    assert status == 200 and body["sums"] == [2 * x for x in range(100)] and body["model"] == "adder-sparse"


def test_circuit_and_models_are_grpcs(served):
    _, get, stubs = served
    status, body, _ = get("/v1/circuit?model=adder-sparse")
    assert status == 200
    assert body == to_json(stubs.adder.GetCircuit(adder_pb2.GetCircuitRequest(model="adder-sparse"), timeout=HANG_S))
    assert len(body["edges"]) == len(SPARSE_EDGES) and body["domain_size"] == 10_000  # numbers, not strings
    assert body["dead_heads"] == [{"layer": 1, "head": 1}] and body["training"]["config"]["fixture"] is True
    status, body, _ = get("/v1/models")
    assert [m["name"] for m in body["models"]] == ["adder-dense", "adder-sparse"]


@pytest.mark.parametrize("query, grpc_request", [
    ("a=120&b=1", adder_pb2.AddRequest(a=120, b=1)),
    ("a=1&b=-3", adder_pb2.AddRequest(a=1, b=-3)),
    ("a=1&b=2&model=adder-nope", adder_pb2.AddRequest(a=1, b=2, model="adder-nope")),
])
def test_errors_have_grpcs_messages(served, query, grpc_request):
    _, get, stubs = served
    status, body, _ = get(f"/v1/add?{query}")
    assert body["error"] == grpc_error(stubs.adder.Add, grpc_request)
    assert (status, body["code"]) in {(400, "INVALID_ARGUMENT"), (404, "NOT_FOUND")}


@pytest.mark.parametrize("path, status, message", [
    ("/v1/add?a=thirty&b=1", 400, "a='thirty' is not an integer"),
    ("/v1/add?a=1&a=2", 400, "parameter 'a' is given 2 times; it takes one value"),
    ("/v1/add?a=1&b=2&colour=red", 400, "unknown parameter 'colour': AddRequest takes a, b, model, trace"),
    ("/v1/add?a=1&b=2&trace=maybe", 400, "trace='maybe' is not a boolean (1/0, true/false)"),
    ("/v1/add?a=1&b=2&timeout_ms=soon", 400, "timeout_ms must be a positive number of milliseconds, got 'soon'"),
    ("/v1/add_batch?a=1,2&b=3", 400, "a and b must have the same length, got 2 and 1"),
    ("/v2/models/adder-nope", 404, "model 'adder-nope' not found; models: adder-dense, adder-sparse"),
    ("/v2/models/adder-sparse/versions/2/ready", 404, "model adder-sparse has no version '2'; versions: 1"),
    ("/v3/anything", 404, "no route GET /v3/anything; see /v2, /v1/models or the explorer at /"),
])
def test_http_only_mistakes_are_named(served, path, status, message):
    got = served[1](path)
    assert (got[0], got[1]["error"]) == (status, message)


def infer(get, body, model="adder-sparse", headers=None):
    return get(f"/v2/models/{model}/infer", body, headers)


@pytest.mark.parametrize("inputs, message", [
    ([{"name": "a", "datatype": "INT64", "shape": [1], "data": [1]}], "inputs must be exactly ['a', 'b'], got ['a']"),
    ([{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}, {"name": "b", "datatype": "INT64", "shape": [1],
      "data": [1]}], "input 'a' has datatype FP32, expected INT64"),
    ([{"name": "a", "datatype": "INT64", "shape": [2], "data": [1]}, {"name": "b", "datatype": "INT64", "shape": [1],
      "data": [1]}], "input 'a' has 1 values in data, shape [2] needs 2"),
    ([{"name": "a", "datatype": "INT64", "shape": [1], "data": [1.5]}, {"name": "b", "datatype": "INT64",
      "shape": [1], "data": [1]}], "input 'a' data must be integers for INT64, got 1.5"),
    ([{"name": "a", "datatype": "INT64", "shape": [1, 1], "data": [[1]]}, {"name": "b", "datatype": "INT64",
      "shape": [1], "data": [1]}], "input 'a' has shape [1, 1], expected [N]"),
])
def test_v2_json_request_mistakes(served, inputs, message):
    status, body, _ = infer(served[1], {"inputs": inputs})
    assert (status, body["error"]) == (400, message)


def test_v2_binary_request_sizes_are_checked(served):
    _, get, _ = served
    header = json.dumps({"inputs": [
        {"name": "a", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}},
        {"name": "b", "datatype": "INT64", "shape": [1], "parameters": {"binary_data_size": 8}}]}).encode()
    raw = (36).to_bytes(8, "little") + (28).to_bytes(8, "little")
    status, body, headers = infer(get, header + raw, headers={"Inference-Header-Content-Length": str(len(header))})
    assert status == 200 and body["outputs"][0]["data"] == [64]
    status, body, _ = infer(get, header + raw + b"xx", headers={"Inference-Header-Content-Length": str(len(header))})
    assert (status, body["error"]) == (400, "2 bytes of binary data follow the last input's (the inputs' "
                                            "binary_data_size add up to less)")
    status, body, _ = infer(get, header + raw[:12], headers={"Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and body["error"] == "input 'b' binary_data_size is 8, but 4 bytes of binary data are left"
    status, body, _ = infer(get, header + raw, headers={"Inference-Header-Content-Length": "9999"})
    assert status == 400 and "Inference-Header-Content-Length is '9999'" in body["error"]


def test_health_and_drain(fixture_repository):
    with running_server(fixture_repository, http_port=0, grace_seconds=1.0) as server:
        get = Http(server.http_port)
        assert [get(p)[0] for p in ("/v2/health/live", "/v2/health/ready", "/v2/models/adder-dense/ready")] == \
            [200, 200, 200]
        server.drain()
        assert get("/v2/health/live")[:2] == (200, {"live": True})  # liveness stays: the process is fine
        assert get("/v2/health/ready")[:2] == (503, {"ready": False})
        assert get("/v2/models/adder-dense/ready")[:2] == (503, {"ready": False})
        status, body, _ = get("/v1/add?a=1&b=2")
        assert (status, body["error"]) == (503, "server is shutting down; retry on another replica")


def test_unready_server_answers_503(fixture_repository):
    with running_server(fixture_repository, load=False, http_port=0) as server:
        get = Http(server.http_port)
        assert get("/v2/health/ready")[0] == 503 and get("/v2/health/live")[0] == 200
        status, body, _ = get("/v1/add?a=1&b=2")
        assert status == 503 and body["error"].startswith("model adder-sparse is not ready (LOADING)")


def test_deadline_gives_504_and_is_counted(fixture_repository):
    # A long queue delay, always applied, holds a lone request in the batcher past its deadline.
    with running_server(fixture_repository, http_port=0, max_queue_delay_us=30_000_000,
                        queue_delay_policy="always") as server:
        status, body, _ = Http(server.http_port)("/v1/add?a=1&b=2&timeout_ms=200")
        assert (status, body["code"]) == (504, "DEADLINE_EXCEEDED")
        tensors = [{"name": n, "datatype": "INT64", "shape": [1], "data": [1]} for n in "ab"]
        status, body, _ = infer(Http(server.http_port), {"inputs": tensors, "parameters": {"timeout": 200_000}})
        assert (status, body["code"]) == (504, "DEADLINE_EXCEEDED")
        counted = server.metrics.registry.get_sample_value(
            "adder_request_duration_seconds_count",
            {"method": "Add", "model": "adder-sparse", "code": "DEADLINE_EXCEEDED", "protocol": "http"})
        assert counted == 1


def test_a_timeout_that_passes_in_a_filling_batch_leaves_it_unrun(fixture_repository):
    """A follower's timeout_ms passes while its leader's batch fills: 504, counted as DEADLINE_EXCEEDED,
    and when the batch runs its rows are not in it."""
    with running_server(fixture_repository, http_port=0, max_queue_delay_us=30_000_000,
                        queue_delay_policy="always") as server:
        answers = []
        leader = threading.Thread(target=lambda: answers.append(Http(server.http_port)("/v1/add?a=1&b=2")))
        leader.start()
        batcher = server.models.models["adder-sparse"].batcher
        assert eventually(lambda: batcher.state().filling)
        status, body, _ = Http(server.http_port)("/v1/add?a=5&b=5&timeout_ms=200")
        assert (status, body["code"]) == (504, "DEADLINE_EXCEEDED")
        batcher.drain()
        leader.join(HANG_S)
        assert [(status, body["sum"]) for status, body, _ in answers] == [(200, 3)]
        registry = server.metrics.registry
        assert registry.get_sample_value("adder_batch_size_sum", {"model": "adder-sparse"}) == 1  # the leader's row
        assert registry.get_sample_value("adder_request_duration_seconds_count", {
            "method": "Add", "model": "adder-sparse", "code": "DEADLINE_EXCEEDED", "protocol": "http"}) == 1


def test_limits_body_size_and_requests_in_progress(fixture_repository):
    with running_server(fixture_repository, http_port=0, max_message_bytes=1024, max_concurrent_rpcs=1,
                        max_queue_delay_us=30_000_000, queue_delay_policy="always") as server:
        get = Http(server.http_port)
        status, body, _ = get("/v1/add_batch", {"a": list(range(99)) * 3, "b": list(range(99)) * 3})
        assert (status, body["code"]) == (429, "RESOURCE_EXHAUSTED")
        assert body["error"].startswith("the request body is") and "the limit is 1,024" in body["error"]
        # One request held in the batcher fills the server; the next is refused at once.
        answers = []
        held = threading.Thread(target=lambda: answers.append(Http(server.http_port)("/v1/add?a=1&b=2")))
        held.start()
        batcher = server.models.models["adder-sparse"].batcher
        assert eventually(lambda: batcher.state().filling)  # it leads a batch that waits 30 s to fill
        status, body, _ = get("/v1/add?a=1&b=2")
        assert (status, body["code"]) == (429, "RESOURCE_EXHAUSTED") and "the limit is 1" in body["error"]
        batcher.drain()  # the held request runs now
        held.join(HANG_S)
        assert [(status, body["sum"]) for status, body, _ in answers] == [(200, 3)]


def test_metrics_count_http_apart_from_grpc(served):
    server, get, stubs = served
    registry = server.metrics.registry

    def count(protocol, code="OK"):
        return registry.get_sample_value("adder_request_duration_seconds_count", {
            "method": "Add", "model": "adder-dense", "code": code, "protocol": protocol}) or 0

    before = (count("http"), count("grpc"), count("http", "INVALID_ARGUMENT"))
    get("/v1/add?a=1&b=2&model=adder-dense")
    get("/v1/add?a=1&b=200&model=adder-dense")
    stubs.adder.Add(adder_pb2.AddRequest(a=1, b=2, model="adder-dense"), timeout=HANG_S)
    after = (count("http"), count("grpc"), count("http", "INVALID_ARGUMENT"))
    assert [y - x for x, y in zip(before, after)] == [1, 1, 1]


def test_tls_serves_https_only(fixture_repository, tmp_path):
    ca = CertificateAuthority(tmp_path, "adder-test-ca")
    pair = ca.server()
    with running_server(fixture_repository, http_port=0, tls_cert=str(pair.cert), tls_key=str(pair.key)) as server:
        trusting = ssl.create_default_context(cafile=str(ca.cert))
        status, body, _ = Http(server.http_port, trusting)("/v1/add?a=36&b=28")
        assert (status, body["answer"]) == (200, "00064")
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            Http(server.http_port)("/v1/add?a=36&b=28")  # plain HTTP to a TLS port


def test_http_port_minus_one_turns_http_off(fixture_repository):
    with running_server(fixture_repository, http_port=-1) as server:
        assert server.http is None and server.http_port is None


def test_a_client_that_hangs_up_leaves_the_queue(fixture_repository):
    # Held in the batcher by a long queue delay; the client closes its connection before an answer.
    with running_server(fixture_repository, http_port=0, max_queue_delay_us=30_000_000,
                        queue_delay_policy="always") as server:
        registry = server.metrics.registry
        connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=HANG_S)
        connection.request("GET", "/v1/add?a=1&b=2")
        batcher = server.models.models["adder-sparse"].batcher
        assert eventually(lambda: batcher.state().filling)  # it leads a batch that waits 30 s to fill
        connection.close()
        sample = ("adder_request_duration_seconds_count",
                  {"method": "Add", "model": "adder-sparse", "code": "CANCELLED", "protocol": "http"})
        assert eventually(lambda: registry.get_sample_value(*sample) == 1)
        assert batcher.state().batch == 0  # it left the batch: nothing waits for the 30 s delay
        assert registry.get_sample_value("adder_inflight_requests") == 0
        assert not registry.get_sample_value("adder_inference_duration_seconds_count", {"model": "adder-sparse"})


def test_explain_answers_as_grpc_does(served):
    server, get, stubs = served
    for a, b in ((36, 28), (43, 59), (0, 0)):
        status, body, _ = get(f"/v1/explain?a={a}&b={b}")
        expected = stubs.adder.Explain(adder_pb2.ExplainRequest(a=a, b=b), timeout=HANG_S)
        assert status == 200 and body == to_json(expected)
        assert body["answer"] == f"{a + b:05d}"
    # the dense build has no gates to close: the same refusal as gRPC, as a client error
    status, body, _ = get("/v1/explain?a=1&b=2&model=adder-dense")
    message = grpc_error(stubs.adder.Explain, adder_pb2.ExplainRequest(a=1, b=2, model="adder-dense"))
    assert 400 <= status < 500 and body["error"] == message


def test_an_http_server_that_never_starts_is_an_error_not_a_hang(fixture_repository, monkeypatch):
    """uvicorn's serve() never reaching `started` (here: it only sleeps) ends start() with an OSError."""
    from fixtures.service_servers import test_config  # imported here: pytest would collect it as a test

    async def never_starts(self, sockets=None):
        while not self.should_exit:
            await asyncio.sleep(0.01)

    monkeypatch.setattr(http_server, "_START_TIMEOUT_S", 0.5)
    monkeypatch.setattr(http_server.uvicorn.Server, "serve", never_starts)
    endpoint = http_server.HttpEndpoint(lambda *args: None, test_config(fixture_repository, http_port=0))
    with pytest.raises(OSError, match="did not start within"):
        endpoint.start()
    endpoint.stop(0.1)
