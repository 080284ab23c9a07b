"""Reloading the model repository (RepositoryModelLoad/Unload/Index, SIGHUP): a bad new version never
replaces a serving one; a good one replaces it without failing a request, in flight or new."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest

from service.process import ServerProcess
from contract import DENSE_MODEL, SPARSE_MODEL
from fixtures.fakes import HANG_S, eventually
from fixtures.service_repository import build_repository, write_model
from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.generated.inference import grpc_predict_v2_pb2 as pb


def load(client, model: str = SPARSE_MODEL):
    return client.inference.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=model), timeout=HANG_S)


def index(client, ready: bool = False) -> dict[tuple[str, str], tuple[str, str]]:
    response = client.inference.RepositoryIndex(pb.RepositoryIndexRequest(ready=ready), timeout=HANG_S)
    return {(m.name, m.version): (m.state, m.reason) for m in response.models}


def served_version(client, model: str = SPARSE_MODEL) -> str:
    response = client.adder.Add(adder_pb2.AddRequest(a=36, b=28, model=model), timeout=HANG_S)
    assert (response.sum, response.answer) == (64, "00064")
    return response.model_version


def test_the_index_lists_each_model_with_its_state(tmp_path):
    repository = build_repository(tmp_path, dense="bad_sha")
    with running_server(repository, model_control_mode="explicit") as server, connect(server.port) as client:
        models = index(client)
        assert models[(SPARSE_MODEL, "1")] == ("READY", "")
        assert models[(DENSE_MODEL, "1")][0] == "UNAVAILABLE" and "sha256 mismatch" in models[(DENSE_MODEL, "1")][1]
        assert list(index(client, ready=True)) == [(SPARSE_MODEL, "1")]


@pytest.mark.parametrize("variant,reason", [("corrupt", "INVALID_PROTOBUF"), ("bad_sha", "sha256 mismatch"),
                                            ("wrong", "self-test failed: 9900/10000 right")])
def test_a_bad_new_version_is_refused_and_the_old_one_keeps_serving(tmp_path, variant, reason):
    repository = build_repository(tmp_path)
    with running_server(repository, model_control_mode="explicit") as server, connect(server.port) as client:
        write_model(repository, SPARSE_MODEL, variant, version="2")
        with pytest.raises(grpc.RpcError) as caught:
            load(client)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"model {SPARSE_MODEL} version 2 not loaded: " in caught.value.details()
        assert reason in caught.value.details() and "still serving version 1" in caught.value.details()
        assert served_version(client) == "1"
        assert client.status(SPARSE_MODEL) == "SERVING" and client.status("") == "SERVING"
        models = index(client)
        assert models[(SPARSE_MODEL, "1")] == ("READY", "")
        assert models[(SPARSE_MODEL, "2")][0] == "UNAVAILABLE" and reason in models[(SPARSE_MODEL, "2")][1]
        refused = {"model": SPARSE_MODEL, "result": "refused"}
        assert server.metrics.registry.get_sample_value("adder_model_reloads_total", refused) == 1


def test_a_good_new_version_replaces_the_old_one_without_failing_requests(tmp_path):
    repository = build_repository(tmp_path)
    with running_server(repository, model_control_mode="explicit", worker_threads=16) as server, \
            connect(server.port) as client:
        old = server.models.models[SPARSE_MODEL]
        held, release = threading.Event(), threading.Event()
        run = old.runtime.run

        def slow_run(a, b):  # the old version's next batch is still running when the new one swaps in
            held.set()
            release.wait(HANG_S)
            return run(a, b)

        old.batcher._run = slow_run
        in_flight = client.adder.Add.future(adder_pb2.AddRequest(a=99, b=99, model=SPARSE_MODEL), timeout=HANG_S)
        assert held.wait(HANG_S)
        old.batcher._run = run
        stop, versions, failures = threading.Event(), [], []

        def hammer(seed: int) -> None:
            a = seed
            while not stop.is_set():
                a = (a * 7 + 3) % 100
                try:
                    response = client.adder.Add(adder_pb2.AddRequest(a=a, b=99 - a, model=SPARSE_MODEL), timeout=HANG_S)
                    if response.sum != 99:
                        failures.append(f"{a}+{99 - a} -> {response.sum}")
                    versions.append(response.model_version)
                except grpc.RpcError as error:
                    failures.append(f"{error.code().name}: {error.details()}")

        clients = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
        for thread in clients:
            thread.start()
        write_model(repository, SPARSE_MODEL, version="2")
        load(client)  # returns once version 2 passed its checks and serves
        after_swap = len(versions)
        release.set()
        response = in_flight.result()
        assert (response.sum, response.model_version) == (198, "1")  # finished on the version it started on
        assert eventually(lambda: len(versions) >= after_swap + 20 or failures)
        stop.set()
        for thread in clients:
            thread.join(HANG_S)
        assert failures == []
        assert versions[-1] == "2" and served_version(client) == "2"
        assert index(client)[(SPARSE_MODEL, "2")] == ("READY", "")
        assert load_result(server, "loaded") == 1
        load(client)  # nothing changed on disk: nothing to do
        assert load_result(server, "unchanged") == 1


def load_result(server, result: str) -> float | None:
    return server.metrics.registry.get_sample_value("adder_model_reloads_total",
                                                    {"model": SPARSE_MODEL, "result": result})


def test_unload_then_load_again(tmp_path):
    repository = build_repository(tmp_path)
    with running_server(repository, model_control_mode="explicit") as server, connect(server.port) as client:
        client.inference.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=DENSE_MODEL), timeout=HANG_S)
        with pytest.raises(grpc.RpcError) as caught:
            served_version(client, DENSE_MODEL)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and "UNLOADED" in caught.value.details()
        # The other model still serves and, with the unloaded one left out, the server is ready.
        assert served_version(client, SPARSE_MODEL) == "1"
        assert client.status(DENSE_MODEL) == "NOT_SERVING" and client.status("") == "SERVING"
        assert index(client)[(DENSE_MODEL, "1")][0] == "UNAVAILABLE"
        load(client, DENSE_MODEL)
        assert served_version(client, DENSE_MODEL) == "1" and client.status(DENSE_MODEL) == "SERVING"


def test_a_failed_model_is_fixed_by_a_reload(tmp_path):
    repository = build_repository(tmp_path, sparse="bad_sha")
    with running_server(repository, model_control_mode="explicit") as server, connect(server.port) as client:
        assert client.status("") == "NOT_SERVING"
        write_model(repository, SPARSE_MODEL, version="1")  # the right files, same version
        load(client)
        assert served_version(client) == "1" and client.status("") == "SERVING"


def test_repository_rpcs_need_model_control_explicit_and_a_known_model(tmp_path):
    repository = build_repository(tmp_path)
    with running_server(repository) as server, connect(server.port) as client:
        for call, request in ((client.inference.RepositoryModelLoad, pb.RepositoryModelLoadRequest),
                              (client.inference.RepositoryModelUnload, pb.RepositoryModelUnloadRequest)):
            with pytest.raises(grpc.RpcError) as caught:
                call(request(model_name=SPARSE_MODEL), timeout=HANG_S)
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "ADDER_MODEL_CONTROL_MODE=explicit" in caught.value.details()
        assert served_version(client) == "1"
    with running_server(repository, model_control_mode="explicit") as server, connect(server.port) as client:
        with pytest.raises(grpc.RpcError) as caught:
            load(client, "adder-nope")
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        request = pb.RepositoryModelLoadRequest(model_name=SPARSE_MODEL)
        request.parameters["config"].string_param = "{}"
        with pytest.raises(grpc.RpcError) as caught:
            client.inference.RepositoryModelLoad(request, timeout=HANG_S)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_the_repository_and_keeps_a_good_version_over_a_bad_one(tmp_path, workers):
    repository = build_repository(tmp_path / "repository")
    with ServerProcess(repository, tmp_path / "server.log", max_batch_size=64, intra_op_threads=1,
                       extra_args=("--workers", str(workers))) as server:

        def versions() -> set[str]:
            """The sparse version each of 8 fresh connections is served (with workers: by any of them)."""
            served = set()
            for _ in range(8):
                with grpc.insecure_channel(server.target) as channel:
                    response = adder_pb2_grpc.AdderStub(channel).Add(
                        adder_pb2.AddRequest(a=50, b=50, model=SPARSE_MODEL), timeout=HANG_S)
                assert response.answer == "00100"
                served.add(response.model_version)
            return served

        assert versions() == {"1"}
        write_model(repository, SPARSE_MODEL, "wrong", version="2")
        os.kill(server.pid, signal.SIGHUP)
        seen, reloaded = server.wait_for("reloaded")  # every worker has reloaded
        assert reloaded["results"] == {SPARSE_MODEL: "refused", DENSE_MODEL: "unchanged"}
        record = server.wait_for("model reload", model=SPARSE_MODEL)[1]
        assert (record["version"], record["result"], record["level"]) == ("2", "refused", "warning")
        assert "self-test failed" in record["reason"] and "still serving version 1" in record["reason"]
        assert versions() == {"1"}
        write_model(repository, SPARSE_MODEL, version="3")
        os.kill(server.pid, signal.SIGHUP)
        reloaded = server.wait_for("reloaded", after=seen + 1)[1]
        assert reloaded["results"] == {SPARSE_MODEL: "loaded", DENSE_MODEL: "unchanged"}
        assert versions() == {"3"}
        assert server.process.poll() is None  # SIGHUP's default action would have killed it


def test_tritonclient_lists_unloads_and_loads(tmp_path):
    repository = build_repository(tmp_path)
    script = Path(__file__).parent / "fixtures" / "service_triton_repository.py"
    with running_server(repository, model_control_mode="explicit") as server:
        result = subprocess.run([sys.executable, str(script), f"127.0.0.1:{server.port}", DENSE_MODEL],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {(m["name"], m["version"], m["state"]) for m in out["index"]["models"]} == {
        (DENSE_MODEL, "1", "READY"), (SPARSE_MODEL, "1", "READY")}
    assert (out["ready_after_unload"], out["ready_after_load"]) == (False, True)
    assert out["error"]["status"] == "StatusCode.NOT_FOUND" and "adder-nope" in out["error"]["message"]


def test_a_reload_of_everything_loads_new_folders_and_keeps_models_whose_folder_went(tmp_path):
    repository = tmp_path / "repository"
    write_model(repository, DENSE_MODEL)
    with running_server(repository) as server, connect(server.port) as client:
        assert served_version(client, DENSE_MODEL) == "1"
        write_model(repository, SPARSE_MODEL)
        shutil.rmtree(repository / DENSE_MODEL)
        outcomes = {o.model: o.result for o in server.models.reload()}  # what SIGHUP runs
        assert outcomes == {SPARSE_MODEL: "loaded"}
        assert served_version(client, SPARSE_MODEL) == "1" and served_version(client, DENSE_MODEL) == "1"
        assert client.status(SPARSE_MODEL) == "SERVING" and client.status("") == "SERVING"
