"""Health and readiness: not ready -> serving -> draining; wrong or tampered models never turn SERVING."""

import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from fixtures.fakes import HANG_S
from fixtures.service_repository import build_repository
from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2
from service.generated.inference import grpc_predict_v2_pb2 as kserve

NAMES = ("", "adder.v1.Adder", "inference.GRPCInferenceService", "adder-sparse", "adder-dense")


def statuses(client) -> dict[str, str]:
    return {name: client.status(name) for name in (*NAMES, "liveness")}


def add_error(client, model="") -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        client.adder.Add(adder_pb2.AddRequest(a=1, b=2, model=model), timeout=HANG_S)
    return caught.value


def test_not_ready_then_serving_then_draining(fixture_repository):
    with running_server(fixture_repository, load=False) as server, connect(server.port) as client:
        watch = client.health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=HANG_S)
        seen = [health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status)]

        assert statuses(client) == {**{n: "NOT_SERVING" for n in NAMES}, "liveness": "SERVING"}
        error = add_error(client)
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "not ready (LOADING)" in error.details()
        assert not client.inference.ServerReady(kserve.ServerReadyRequest(), timeout=HANG_S).ready

        server.load_models()
        seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status))
        assert statuses(client) == {**{n: "SERVING" for n in NAMES}, "liveness": "SERVING"}
        assert client.inference.ServerReady(kserve.ServerReadyRequest(), timeout=HANG_S).ready
        assert client.adder.Add(adder_pb2.AddRequest(a=1, b=2), timeout=HANG_S).sum == 3

        server.drain()
        seen.append(health_pb2.HealthCheckResponse.ServingStatus.Name(next(watch).status))
        watch.cancel()
        assert statuses(client) == {**{n: "NOT_SERVING" for n in NAMES}, "liveness": "SERVING"}
        error = add_error(client)
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in error.details()
        assert client.inference.ServerLive(kserve.ServerLiveRequest(), timeout=HANG_S).live
        assert not client.inference.ServerReady(kserve.ServerReadyRequest(), timeout=HANG_S).ready
        assert not client.inference.ModelReady(kserve.ModelReadyRequest(name="adder-dense"), timeout=HANG_S).ready
    assert seen == ["NOT_SERVING", "SERVING", "NOT_SERVING"]


def test_wrong_and_tampered_models_stay_not_serving(tmp_path, caplog):
    repository = build_repository(tmp_path, sparse="wrong", dense="bad_sha")
    caplog.set_level(logging.INFO)
    with running_server(repository) as server, connect(server.port) as client:
        assert statuses(client) == {**{n: "NOT_SERVING" for n in NAMES}, "liveness": "SERVING"}
        models = {m.name: m for m in client.adder.ListModels(adder_pb2.ListModelsRequest(), timeout=HANG_S).models}
        sparse, dense = models["adder-sparse"], models["adder-dense"]
        assert (sparse.ready, sparse.state, sparse.self_test_correct) == (False, "FAILED", 9_900)
        assert sparse.reason == "self-test failed: 9900/10000 right, first wrong: 99+0 -> 00100 (sum 100)"
        assert (dense.ready, dense.state) == (False, "FAILED")
        assert "sha256 mismatch" in dense.reason and "manifest says 0000" in dense.reason
        assert dense.sha256 != "0" * 64 and dense.size_bytes > 0  # what is on disk, for the operator
        error = add_error(client, "adder-dense")
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "sha256 mismatch" in error.details()
        assert server.metrics.registry.get_sample_value("adder_model_ready", {"model": "adder-sparse"}) == 0
    failures = {r.fields["model"]: r.fields["reason"] for r in caplog.records if r.getMessage() == "model failed"}
    assert set(failures) == {"adder-sparse", "adder-dense"}


def test_one_bad_model_leaves_the_other_serving(tmp_path):
    repository = build_repository(tmp_path, sparse="bad_sha")
    with running_server(repository) as server, connect(server.port) as client:
        assert client.status("adder-dense") == "SERVING" and client.status("adder-sparse") == "NOT_SERVING"
        assert client.status("") == "NOT_SERVING"  # overall readiness needs every model right
        assert client.adder.Add(adder_pb2.AddRequest(a=7, b=8, model="adder-dense"), timeout=HANG_S).sum == 15


def test_reflection_lists_the_services(fixture_repository):
    with running_server(fixture_repository) as server, connect(server.port) as client:
        database = ProtoReflectionDescriptorDatabase(client.channel)
        assert set(database.get_services()) == {
            "adder.v1.Adder", "inference.GRPCInferenceService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"}
        found = database.FindFileContainingSymbol("adder.v1.AddRequest")
        assert found.name == "adder/v1/adder.proto" and found.package == "adder.v1"
