"""Limits, all configurable: message size (received and sent), rows per AddBatch/ModelInfer, concurrent RPCs.

Past each the client gets RESOURCE_EXHAUSTED with a message saying which limit, and the server goes on.
"""

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2

from fixtures.fakes import HANG_S, eventually
from fixtures.service_servers import connect, running_server
from service.config import Config, parse_args
from service.generated.adder.v1 import adder_pb2
from service.generated.inference import grpc_predict_v2_pb2 as pb

EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def error_of(method, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        method(request, timeout=HANG_S)
    return caught.value


def still_answers(client):
    assert client.adder.Add(adder_pb2.AddRequest(a=36, b=28), timeout=HANG_S).sum == 64


def test_limits_are_configured_by_environment_and_flags():
    config = parse_args(["--max-concurrent-rpcs", "8"], environ={"ADDER_MAX_MESSAGE_BYTES": "65536",
                                                                 "ADDER_MAX_REQUEST_BATCH": "100"})
    assert (config.max_message_bytes, config.max_concurrent_rpcs, config.max_request_batch) == (65536, 8, 100)
    assert (Config().max_message_bytes, Config().max_concurrent_rpcs) == (4 * 1024 * 1024, 256)
    with pytest.raises(SystemExit, match="max_message_bytes must be >= 1024, got 10"):
        parse_args(["--max-message-bytes", "10"], environ={})
    with pytest.raises(SystemExit, match="max_concurrent_rpcs must be >= 0, got -1"):
        parse_args([], environ={"ADDER_MAX_CONCURRENT_RPCS": "-1"})


def test_message_size_limit_both_ways(fixture_repository):
    with running_server(fixture_repository, max_message_bytes=16 * 1024) as server, connect(server.port) as client:
        # Received: a 20 kB request.
        request = adder_pb2.AddRequest(a=1, b=1, model="m" * 20_000)
        error = error_of(client.adder.Add, request)
        assert error.code() == EXHAUSTED
        assert error.details() == f"SERVER: Received message larger than max ({request.ByteSize()} vs. 16384)"
        # Sent: 5,000 problems fit in 10 kB, their answers do not.
        rows = 5000
        error = error_of(client.adder.AddBatch, adder_pb2.AddBatchRequest(a=[1] * rows, b=[2] * rows))
        assert error.code() == EXHAUSTED and error.details().startswith("SERVER: Sent message larger than max (")
        still_answers(client)


def test_the_default_message_limit_carries_the_largest_allowed_batch(fixture_repository):
    """max_request_batch (10,000) rows in and out of ModelInfer, every output, fit in the 4 MiB default."""
    with running_server(fixture_repository) as server, connect(server.port) as client:
        a = np.arange(10_000, dtype="<i8") % 100
        request = pb.ModelInferRequest(model_name="adder-sparse")
        for name in ("a", "b"):
            request.inputs.add(name=name, datatype="INT64", shape=[len(a)])
            request.raw_input_contents.append(a.tobytes())
        response = client.inference.ModelInfer(request, timeout=HANG_S)
        assert np.array_equal(np.frombuffer(response.raw_output_contents[0], "<i8"), 2 * a)


def test_rows_per_request_limit(fixture_repository):
    with running_server(fixture_repository, max_request_batch=10) as server, connect(server.port) as client:
        error = error_of(client.adder.AddBatch, adder_pb2.AddBatchRequest(a=[1] * 11, b=[1] * 11))
        assert (error.code(), error.details()) == (EXHAUSTED, "11 problems in one request, the limit is 10")
        request = pb.ModelInferRequest(model_name="adder-dense")
        for name in ("a", "b"):
            request.inputs.add(name=name, datatype="INT32", shape=[11]).contents.int_contents.extend([1] * 11)
        error = error_of(client.inference.ModelInfer, request)
        assert (error.code(), error.details()) == (EXHAUSTED, "11 problems in one request, the limit is 10")
        assert len(client.adder.AddBatch(adder_pb2.AddBatchRequest(a=[1] * 10, b=[1] * 10), timeout=HANG_S).sums) == 10


def test_concurrent_rpc_limit(fixture_repository):
    """Two health Watch streams hold both slots: a third RPC is refused until one of them ends."""
    with running_server(fixture_repository, max_concurrent_rpcs=2) as server, connect(server.port) as client:
        watches = [client.health.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(2)]
        try:
            for watch in watches:
                assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            error = error_of(client.adder.Add, adder_pb2.AddRequest(a=1, b=1))
            assert (error.code(), error.details()) == (EXHAUSTED, "Concurrent RPC limit exceeded!")
            watches[0].cancel()

            def answers() -> bool:
                try:
                    return client.adder.Add(adder_pb2.AddRequest(a=2, b=3), timeout=HANG_S).sum == 5
                except grpc.RpcError as refused:
                    assert refused.code() == EXHAUSTED
                    return False

            assert eventually(answers)
        finally:
            for watch in watches:
                watch.cancel()
