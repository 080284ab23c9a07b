"""Checks of a running sparse-adder container from the host (driven by docker/image-test.sh, `make image-test`).

The container runs as the Dockerfile's header says; these talk to it through its published ports with
real gRPC and HTTP clients, and look inside with `podman exec` / `podman inspect`. The last test stops it.
"""

import json
import os
import subprocess
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from contract import MODELS
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc

CONTAINER = os.environ.get("IMAGE_TEST_CONTAINER", "")
pytestmark = pytest.mark.skipif(not CONTAINER, reason="run by docker/image-test.sh (make image-test)")
IMAGE = os.environ.get("IMAGE_TEST_IMAGE", "")
TARGET = os.environ.get("IMAGE_TEST_GRPC", "")
METRICS = os.environ.get("IMAGE_TEST_METRICS", "")
STOP_SECONDS = os.environ.get("IMAGE_TEST_STOP_SECONDS", "20")
UID = "10001"


def podman(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *argv], capture_output=True, text=True, timeout=120)


def in_container(*argv: str) -> subprocess.CompletedProcess:
    return podman("exec", CONTAINER, *argv)


@pytest.fixture(scope="module")
def channel():
    with grpc.insecure_channel(TARGET) as opened:
        yield opened


def test_the_image_keeps_its_user_and_healthcheck():
    image = json.loads(podman("image", "inspect", IMAGE).stdout)[0]
    assert image["Config"]["User"] == f"{UID}:{UID}"
    assert image["Healthcheck"]["Test"][-2:] == ["/opt/sparse-adder/healthcheck.py", ""]  # docker format keeps it


@pytest.mark.parametrize("service", ["", "liveness", *MODELS])
def test_grpc_health_is_serving_from_the_host(channel, service):
    response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("model", MODELS)
def test_add_36_28_is_64_on_each_model(channel, model):
    response = adder_pb2_grpc.AdderStub(channel).Add(adder_pb2.AddRequest(a=36, b=28, model=model), timeout=10)
    assert (response.sum, response.answer, response.model) == (64, "00064", model)


def test_metrics_has_the_adder_families():
    with urllib.request.urlopen(METRICS, timeout=10) as response:
        names = {family.name for family in text_string_to_metric_families(response.read().decode())}
    assert {"adder_model_ready", "adder_answers", "adder_request_duration_seconds", "adder_attention_edges"} <= names


def test_the_server_runs_as_uid_10001():
    status = in_container("cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    gids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Gid:"))
    assert set(uids) == {UID} and set(gids) == {UID}, (uids, gids)


def test_one_worker_per_cpu_all_as_uid_10001_and_one_scrape_counts_them():
    cpus = int(in_container("python", "-c", "import os; print(len(os.sched_getaffinity(0)))").stdout)
    logs = podman("logs", CONTAINER)
    listening = next(json.loads(line) for line in (logs.stderr + logs.stdout).splitlines()
                     if '"message": "listening"' in line)
    assert listening["workers"] == cpus and len(listening["pids"]) == cpus  # ADDER_WORKERS=0: one per CPU
    for pid in listening["pids"]:
        status = in_container("cat", f"/proc/{pid}/status").stdout
        assert next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:")) == [UID] * 4
    with urllib.request.urlopen(METRICS, timeout=10) as response:
        samples = {s.name: s.value for family in text_string_to_metric_families(response.read().decode())
                   for s in family.samples}
    assert samples["adder_workers"] == cpus


def test_root_is_read_only_tmp_writable_models_not():
    root = in_container("touch", "/written-by-test")
    assert root.returncode != 0 and "Read-only file system" in root.stderr
    assert in_container("touch", "/tmp/written-by-test").returncode == 0
    models = in_container("touch", "/models/written-by-test")
    assert models.returncode != 0 and models.stderr.strip()
    assert in_container("find", "/models", "-name", "*.pt").stdout.strip() == ""


def test_torch_is_not_in_the_image():
    result = in_container("python", "-c", "import torch")
    assert result.returncode != 0 and "No module named 'torch'" in result.stderr


def test_sigterm_drains_and_exits_0_within_the_grace_period():
    # podman stop sends SIGTERM and waits STOP_SECONDS (grace + margin) before SIGKILL (exit code 137).
    assert podman("stop", "-t", STOP_SECONDS, CONTAINER).returncode == 0
    state = json.loads(podman("inspect", CONTAINER).stdout)[0]["State"]
    assert (state["Running"], state["ExitCode"]) == (False, 0), state
    log = podman("logs", CONTAINER).stderr + podman("logs", CONTAINER).stdout
    assert '"unfinished": 0' in log, log[-2000:]
