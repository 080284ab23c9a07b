"""Faults at start-up: each bad model stays FAILED with a one-line reason while the other serves;
a repository with nothing servable stops the process with exit code 1 and one log line saying why."""

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from contract import DENSE_MODEL, MANIFEST_FILE, MODEL_FILE, SPARSE_MODEL, model_dir
from fixtures.fakes import HANG_S
from fixtures.service_repository import build_repository
from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2

ROOT = Path(__file__).resolve().parents[1]


def edit_manifest(repository: Path, change) -> None:
    path = model_dir(repository, SPARSE_MODEL) / MANIFEST_FILE
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps(change(manifest)))


def drop_sha256(manifest: dict) -> dict:
    del manifest["sha256"]
    return manifest


def escape_folder(manifest: dict) -> dict:
    return {**manifest, "file": "../../adder-dense/1/model.onnx"}


# (name, how to break adder-sparse, words the reason must contain)
FAULTS = [
    ("missing model.onnx", lambda r: (model_dir(r, SPARSE_MODEL) / MODEL_FILE).unlink(),
     "cannot read", "model.onnx: No such file or directory"),
    ("missing manifest", lambda r: (model_dir(r, SPARSE_MODEL) / MANIFEST_FILE).unlink(),
     "adder-sparse/1/manifest.json: cannot read", "No such file or directory"),
    ("corrupt ONNX, matching sha256", lambda r: build_repository(r, sparse="corrupt"),
     "INVALID_PROTOBUF", "model.onnx"),
    ("sha256 mismatch", lambda r: build_repository(r, sparse="bad_sha"), "sha256 mismatch", "manifest says 0000"),
    ("manifest without sha256", lambda r: edit_manifest(r, drop_sha256), "adder-sparse/1/manifest.json: sha256 is missing", ""),
    ("manifest not an object", lambda r: (model_dir(r, SPARSE_MODEL) / MANIFEST_FILE).write_text("[1, 2]"),
     "manifest.json: the top level must be an object, got list", ""),
    ("manifest not JSON", lambda r: (model_dir(r, SPARSE_MODEL) / MANIFEST_FILE).write_text("{\"sha256\":"),
     "manifest.json: not valid JSON", ""),
    ("manifest file outside its folder", lambda r: edit_manifest(r, escape_folder),
     "'file' must name a file in its own folder", ""),
    ("wrong answers", lambda r: build_repository(r, sparse="wrong"), "self-test failed: 9900/10000 right", ""),
]


@pytest.mark.parametrize("name,break_it,must,also", FAULTS, ids=[f[0] for f in FAULTS])
def test_a_bad_model_fails_with_a_one_line_reason_and_the_other_serves(tmp_path, name, break_it, must, also):
    repository = build_repository(tmp_path)
    break_it(repository)
    with running_server(repository) as server, connect(server.port) as client:
        status = {m.name: m for m in client.adder.ListModels(adder_pb2.ListModelsRequest(), timeout=HANG_S).models}
        sparse = status[SPARSE_MODEL]
        assert (sparse.ready, sparse.state) == (False, "FAILED")
        assert must in sparse.reason and also in sparse.reason and "\n" not in sparse.reason
        with pytest.raises(grpc.RpcError) as caught:
            client.adder.Add(adder_pb2.AddRequest(a=1, b=2, model=SPARSE_MODEL), timeout=HANG_S)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE and must in caught.value.details()
        assert status[DENSE_MODEL].ready
        assert client.adder.Add(adder_pb2.AddRequest(a=36, b=28, model=DENSE_MODEL), timeout=HANG_S).sum == 64
        assert client.status(DENSE_MODEL) == "SERVING" and client.status("") == "NOT_SERVING"


def test_a_repository_with_one_model_serves_it_and_the_other_is_not_found(tmp_path):
    repository = build_repository(tmp_path)
    for path in sorted(model_dir(repository, SPARSE_MODEL).iterdir()):
        path.unlink()
    model_dir(repository, SPARSE_MODEL).rmdir()
    with running_server(repository) as server, connect(server.port) as client:
        assert client.adder.Add(adder_pb2.AddRequest(a=2, b=3), timeout=HANG_S).model == DENSE_MODEL  # the only one
        with pytest.raises(grpc.RpcError) as caught:
            client.adder.Add(adder_pb2.AddRequest(a=1, b=2, model=SPARSE_MODEL), timeout=HANG_S)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert client.status("") == "SERVING"


def start_up_failure(repository: Path) -> tuple[int, list[dict]]:
    result = subprocess.run([sys.executable, "-m", "service", "--model-repository", str(repository),
                             "--grpc-port", "0", "--metrics-port", "-1", "--http-port", "-1"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    return result.returncode, [json.loads(line) for line in result.stderr.splitlines()]


def test_no_servable_model_exits_1_with_each_reason_on_one_line(tmp_path):
    code, records = start_up_failure(build_repository(tmp_path, sparse="corrupt", dense="bad_sha"))
    assert code == 1
    failure = records[-1]
    assert (failure["level"], failure["message"]) == ("error", "cannot start")
    reason = failure["reason"]
    assert reason.startswith("no model passed its checks: adder-dense: sha256 mismatch")
    assert "; adder-sparse: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF" in reason


def test_an_empty_repository_exits_1(tmp_path):
    (tmp_path / "adder-sparse").mkdir()  # a model folder without any version
    code, records = start_up_failure(tmp_path)
    assert code == 1
    assert records[-1]["message"] == "cannot start" and "no models in" in records[-1]["reason"]
