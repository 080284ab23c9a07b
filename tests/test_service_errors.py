"""Every error path answers its status code with a precise message, and the server stays healthy after."""

import grpc
import pytest

from fixtures.fakes import HANG_S, eventually
from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2

INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND


def call_error(method, request, timeout=HANG_S) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        method(request, timeout=timeout)
    return caught.value


@pytest.fixture(autouse=True)
def still_healthy(stubs):
    """After each error test the server still answers right and reports SERVING."""
    yield
    assert stubs.adder.Add(adder_pb2.AddRequest(a=36, b=28), timeout=HANG_S).sum == 64
    assert stubs.status("") == "SERVING"


@pytest.mark.parametrize("a, b, message", [
    (100, 1, "a=100 is out of range: must be an integer in 0..99"),
    (-1, 1, "a=-1 is out of range: must be an integer in 0..99"),
    (5, 1000, "b=1000 is out of range: must be an integer in 0..99"),
])
def test_add_out_of_range_names_field_value_and_range(stubs, a, b, message):
    error = call_error(stubs.adder.Add, adder_pb2.AddRequest(a=a, b=b))
    assert error.code() == INVALID and error.details() == message


def test_add_batch_names_the_bad_element(stubs):
    error = call_error(stubs.adder.AddBatch, adder_pb2.AddBatchRequest(a=[1, 2, 3, 120, 500], b=[0] * 5))
    assert error.code() == INVALID
    assert error.details() == "a[3]=120 is out of range: must be an integer in 0..99 (1 more out of range)"


def test_add_batch_unequal_lengths(stubs):
    error = call_error(stubs.adder.AddBatch, adder_pb2.AddBatchRequest(a=[1, 2], b=[3]))
    assert error.code() == INVALID and error.details() == "a and b must have the same length, got 2 and 1"


def test_add_batch_empty(stubs):
    error = call_error(stubs.adder.AddBatch, adder_pb2.AddBatchRequest())
    assert error.code() == INVALID and "empty" in error.details()


def test_add_batch_oversized_is_resource_exhausted(stubs, server):
    rows = server.config.max_request_batch + 1
    error = call_error(stubs.adder.AddBatch, adder_pb2.AddBatchRequest(a=[1] * rows, b=[1] * rows))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == f"{rows} problems in one request, the limit is {rows - 1}"


@pytest.mark.parametrize("method, request_", [
    ("Add", adder_pb2.AddRequest(a=1, b=1, model="adder-huge")),
    ("AddBatch", adder_pb2.AddBatchRequest(a=[1], b=[1], model="adder-huge")),
    ("GetCircuit", adder_pb2.GetCircuitRequest(model="adder-huge")),
])
def test_unknown_model_is_not_found(stubs, method, request_):
    error = call_error(getattr(stubs.adder, method), request_)
    assert error.code() == NOT_FOUND
    assert error.details() == "model 'adder-huge' not found; models: adder-dense, adder-sparse"


def test_unexpected_error_is_internal_with_a_generic_message(stubs, server, monkeypatch, caplog):
    def broken(a, b):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(server.models.models["adder-dense"].batcher, "_run", broken)
    rows = server.config.max_batch_size  # a full batch runs on the handler's thread
    error = call_error(stubs.adder.AddBatch, adder_pb2.AddBatchRequest(a=[1] * rows, b=[1] * rows, model="adder-dense"))
    assert error.code() == grpc.StatusCode.INTERNAL and error.details() == "internal error"
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records if r.levelname == "ERROR")


def test_unimplemented_rpc(stubs):
    statistics = stubs.channel.unary_unary("/inference.GRPCInferenceService/ModelStatistics")
    error = call_error(statistics, b"")
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_deadline_exceeded_while_waiting_for_a_batch(fixture_repository):
    # A long queue delay, always applied, holds a lone request in the batcher past the client's deadline.
    with running_server(fixture_repository, max_queue_delay_us=30_000_000, queue_delay_policy="always") as slow, connect(slow.port) as client:
        error = call_error(client.adder.Add, adder_pb2.AddRequest(a=1, b=2), timeout=0.2)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        registry = slow.metrics.registry

        def ended(code: str) -> float:
            return registry.get_sample_value("adder_request_duration_seconds_count", {
                "method": "Add", "model": "adder-sparse", "code": code, "protocol": "grpc"}) or 0

        # The server ends it too, unanswered and never run. Its label (DEADLINE_EXCEEDED, or CANCELLED when
        # the client's cancel beats the server's copy of the deadline) is checked in test_service_deadlines.
        assert eventually(lambda: ended("DEADLINE_EXCEEDED") + ended("CANCELLED") == 1)
        assert ended("OK") == 0
        assert not registry.get_sample_value("adder_inference_duration_seconds_count", {"model": "adder-sparse"})
        # Still healthy: a full batch does not wait for the queue.
        rows = slow.config.max_batch_size
        response = client.adder.AddBatch(adder_pb2.AddBatchRequest(a=[2] * rows, b=[3] * rows), timeout=HANG_S)
        assert set(response.sums) == {5} and client.status("") == "SERVING"
