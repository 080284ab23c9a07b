"""Handlers built once at registration (service/handlers.py): every unary method keeps its guarantees."""

from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2
from prometheus_client import CollectorRegistry

from fixtures.fakes import HANG_S
from service import handlers
from service.errors import InvalidArgument, rpc
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.metrics import Metrics

UNDECODABLE = b"\xff\xff\xff"


@pytest.mark.parametrize("path, message_type", [
    ("/grpc.health.v1.Health/Check", "grpc.health.v1.HealthCheckRequest"),
    ("/adder.v1.Adder/Add", "adder.v1.AddRequest"),
    ("/inference.GRPCInferenceService/ServerLive", "inference.ServerLiveRequest"),
])
def test_undecodable_bytes_are_invalid_argument_on_every_service(stubs, path, message_type):
    with pytest.raises(grpc.RpcError) as caught:
        stubs.channel.unary_unary(path)(UNDECODABLE, timeout=HANG_S)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details() == f"the request is not a valid {message_type} message (it does not decode)"


def test_health_watch_still_streams(stubs):
    watch = stubs.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=HANG_S)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()


class _Servicer(adder_pb2_grpc.AdderServicer):
    """Add answers, or raises what the request asks for; the rest stays unimplemented."""

    def __init__(self):
        self.metrics = Metrics(CollectorRegistry())

    def label_model(self, name: str) -> str:
        return name or "default"

    @rpc("Add", lambda r: r.model)
    def Add(self, request, context):
        if request.a < 0:
            raise InvalidArgument("a is negative")
        if request.b < 0:
            raise RuntimeError("a bug")
        return adder_pb2.AddResponse(sum=request.a + request.b)


def test_a_registered_servicer_maps_errors_and_times_each_call_by_code():
    servicer = _Servicer()
    server = grpc.server(ThreadPoolExecutor(2))
    handlers.register(server, adder_pb2_grpc.add_AdderServicer_to_server, servicer)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = adder_pb2_grpc.AdderStub(channel)
            assert stub.Add(adder_pb2.AddRequest(a=1, b=2, model="m"), timeout=HANG_S).sum == 3
            codes = []
            for a, b in ((-1, 0), (0, -1)):
                with pytest.raises(grpc.RpcError) as caught:
                    stub.Add(adder_pb2.AddRequest(a=a, b=b, model="m"), timeout=HANG_S)
                codes.append((caught.value.code(), caught.value.details()))
            with pytest.raises(grpc.RpcError) as caught:
                stub.Explain(adder_pb2.ExplainRequest(), timeout=HANG_S)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(0)
    assert codes == [(grpc.StatusCode.INVALID_ARGUMENT, "a is negative"), (grpc.StatusCode.INTERNAL, "internal error")]
    registry = servicer.metrics.registry
    for code in ("OK", "INVALID_ARGUMENT", "INTERNAL"):
        labels = {"method": "Add", "model": "m", "code": code, "protocol": "grpc"}
        assert registry.get_sample_value("adder_request_duration_seconds_count", labels) == 1
    assert registry.get_sample_value("adder_inflight_requests") == 0


def test_the_decorated_method_still_answers_when_called_directly():
    """errors.rpc's wrapper does per call what the registered handler does once: for other callers."""
    servicer = _Servicer()

    class Context:
        def abort(self, code, details):
            raise RuntimeError(code, details)

    assert servicer.Add(adder_pb2.AddRequest(a=2, b=3), Context()).sum == 5
    with pytest.raises(RuntimeError) as caught:
        servicer.Add(adder_pb2.AddRequest(a=-1, b=3), Context())
    assert caught.value.args == (grpc.StatusCode.INVALID_ARGUMENT, "a is negative")
