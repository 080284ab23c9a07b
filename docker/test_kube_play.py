"""k8s/ played for real with `podman kube play` (driven by docker/image-test.sh, `make image-test`).

Two plays, one after the other: k8s/base's Deployment with its generated ConfigMap, and the KServe
overlay's ServingRuntime container wrapped in a Pod (docker/kube_play.py has both, and every edit made
between render and play, each printed with its reason). Each is checked from the host through its
published ports with real clients, inside with `podman exec`, and ends with `podman kube down`.
"""

import json
import math
import os
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contract import MODELS
from kube_play import Play, deployment_play, differences, logs, play_down, play_up, podman, runtime_play
from kube_probes import ANSWER_TIMEOUT_S, attempt, describe, verdict, wait_started
from service.config import from_env
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.generated.inference import grpc_predict_v2_pb2 as pb
from service.generated.inference import grpc_predict_v2_pb2_grpc as pb_grpc

IMAGE = os.environ.get("IMAGE_TEST_KUBE_IMAGE", "")
pytestmark = pytest.mark.skipif(not IMAGE, reason="run by docker/image-test.sh (make image-test)")
FOLDER = Path(os.environ.get("IMAGE_TEST_WORK", "."))
STARTED_WITHIN_S = 600  # a hang bound; the startup probes allow 180 s; seen here: 2-4 s
UID = "10001"
PLAYS = {"deployment": deployment_play, "servingruntime": runtime_play}
FAILED_BEFORE: dict[str, int] = {}  # play -> the session's failures when it started: any new ones print its log


@pytest.fixture(scope="module", params=list(PLAYS))
def played(request):
    """The play, up and started (its startup probe passed); `kube down` and leftovers: the last test."""
    play = PLAYS[request.param](IMAGE)
    for edit in play.edits:
        say(request.config, play, f"edit {edit}")
    result = play_up(play, FOLDER, FOLDER / "kube-pods")
    if result.returncode != 0:
        text = logs(play)
        play_down(play, FOLDER)
        pytest.fail(f"podman kube play failed: {result.stderr}\n{text}")
    probe = play.container()["startupProbe"]
    tries, seconds, failure = wait_started(probe, host_ports(play), lambda: running(play), STARTED_WITHIN_S)
    if failure is not None:
        text = logs(play)
        play_down(play, FOLDER)
        pytest.fail(f"startup probe ({describe(probe)}) never passed: {failure}\n{text}")
    say(request.config, play, f"startupProbe ({describe(probe)}) passed after {tries} tries, {seconds:.0f} s: "
        "run by the test (podman 4.3 ignores startup probes)")
    FAILED_BEFORE[play.name] = request.session.testsfailed
    yield play
    if podman("pod", "exists", play.pod).returncode == 0:  # the last test did not get to it
        play_down(play, FOLDER)


def say(config, play: Play, line: str) -> None:
    """A line on the terminal as the tests run (past pytest's capture): what ran where, and why."""
    with config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
        config.pluginmanager.get_plugin("terminalreporter").write_line(f"kube play {play.name}: {line}")


def host_ports(play: Play) -> dict[int, str]:
    return dict(play.ports.values())


def running(play: Play) -> bool:
    """Up and never restarted: podman restarts an exited container (restartPolicy Always), so a server
    that dies at start-up would look running between its restarts."""
    state = podman("inspect", "--format", "{{.State.Running}} {{.RestartCount}}", play.container_name())
    return state.stdout.split() == ["true", "0"]


def in_container(play: Play, *argv: str):
    return podman("exec", play.container_name(), *argv)


def log_records(play: Play) -> list[dict]:
    result = podman("logs", play.container_name())
    return [json.loads(line) for line in (result.stdout + result.stderr).splitlines() if line.startswith("{")]


def declared_env(play: Play) -> dict[str, str]:
    """ADDER_* as the manifest sets them, over the image's ENV: envFrom ConfigMaps, then env (later wins).
    A resourceFieldRef is resolved as the kubelet does (limits.cpu / divisor, rounded up)."""
    image_env = json.loads(podman("image", "inspect", "--format", "{{json .Config.Env}}", IMAGE).stdout)
    env = dict(item.split("=", 1) for item in image_env)
    container = play.container()
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in play.documents if d["kind"] == "ConfigMap"}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["resourceFieldRef"]
            assert (ref["resource"], str(ref.get("divisor", "1"))) == ("limits.cpu", "1"), ref
            env[item["name"]] = str(math.ceil(cpu_cores(container["resources"]["limits"]["cpu"])))
    return {k: v for k, v in env.items() if k.startswith("ADDER_")}


def cpu_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def podman_liveness_healthcheck(probe: dict | None) -> list[str] | None:
    """The healthcheck podman 4.3 makes of a livenessProbe (its kube.go setupLivenessProbe); None: none."""
    if probe is None or "grpc" in probe:
        return None  # its Kubernetes types have no gRPC probe: dropped
    if "httpGet" in probe:
        get = probe["httpGet"]
        command = f"curl -f http://localhost:{get['port']}{get.get('path', '/')} || exit 1"
        return ["CMD-SHELL", *command.split(" ")]
    raise NotImplementedError(describe(probe))


# ---- the play is the render, with the listed edits only ---------------------------------------


def test_the_played_yaml_is_the_rendered_one_but_for_the_printed_edits(played):
    changed = differences(played.rendered, played.documents)
    for edit in played.edits:
        assert any(path[:len(edit.path)] == edit.path for path in changed), f"a no-op edit: {edit}"
    for path in changed:
        assert any(path[:len(edit.path)] == edit.path for edit in played.edits), f"an unlisted change at {path}"


def test_the_container_is_the_manifests_but_for_image_pull_policy_and_host_ports(played):
    container, source = dict(played.container()), dict(played.source)
    ports, source_ports = container.pop("ports"), source.pop("ports")
    assert differences(source, container) == {("image",), ("imagePullPolicy",)}
    assert {p["hostIP"] for p in ports} == {"127.0.0.1"}
    bare = [{k: v for k, v in p.items() if k not in ("hostIP", "hostPort")} for p in ports]
    assert bare[:len(source_ports)] == source_ports  # the wrapping (runtime_play) only adds ports after them


# ---- probes: what podman runs, and the rest run by the test ------------------------------------


def test_podman_made_of_the_liveness_probe_what_podman_4_3_makes(pytestconfig, played):
    probe = played.container().get("livenessProbe")
    health = json.loads(podman("inspect", "--format", "{{json .Config.Healthcheck}}", played.container_name()).stdout)
    expected = podman_liveness_healthcheck(probe)
    if expected is None:
        assert health is None, health  # nor the image's HEALTHCHECK
        say(pytestconfig, played, f"podman runs no probe: it drops the livenessProbe ({describe(probe)})")
        return
    assert health["Test"] == expected
    assert (health["Interval"], health["Timeout"], health["Retries"]) == (
        probe["periodSeconds"] * 10**9, probe["timeoutSeconds"] * 10**9, probe["failureThreshold"])
    assert in_container(played, "sh", "-c", "command -v curl").returncode != 0  # the image has no curl
    say(pytestconfig, played, f"podman made the livenessProbe a healthcheck, `{' '.join(expected[1:])}`: the image "
        "has no curl, so it cannot pass; the test runs the probe instead")


@pytest.mark.parametrize("kind", ["readinessProbe", "livenessProbe"])
def test_the_declared_probe_passes_run_from_the_host(pytestconfig, played, kind):
    probe = played.container()[kind]
    assert verdict(probe, host_ports(played)) == []
    why = {"readinessProbe": "podman 4.3 ignores readiness probes",
           "livenessProbe": "podman 4.3 drops gRPC probes" if "grpc" in probe else "podman's curl check needs curl"}
    say(pytestconfig, played, f"{kind} ({describe(probe)}) passed: run by the test ({why[kind]})")


# ---- the server, from the host -----------------------------------------------------------------


@pytest.mark.parametrize("service", ["", "liveness", *MODELS])
def test_grpc_health_is_serving(played, service):
    probe = {"grpc": {"port": played.ports["grpc"][0], "service": service}}
    assert attempt(probe, host_ports(played)) is None


@pytest.mark.parametrize("model", MODELS)
def test_add_and_model_infer_over_grpc(played, model):
    with grpc.insecure_channel(played.address("grpc")) as channel:
        added = adder_pb2_grpc.AdderStub(channel).Add(adder_pb2.AddRequest(a=36, b=28, model=model),
                                                      timeout=ANSWER_TIMEOUT_S)
        request = pb.ModelInferRequest(model_name=model, outputs=[pb.ModelInferRequest.InferRequestedOutputTensor(
            name="sum")])
        for name, value in (("a", 36), ("b", 28)):
            request.inputs.add(name=name, datatype="INT64", shape=[1]).contents.int64_contents.append(value)
        inferred = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=ANSWER_TIMEOUT_S)
    assert (added.sum, added.answer, added.model) == (64, "00064", model)
    assert [o.name for o in inferred.outputs] == ["sum"]
    assert np.frombuffer(inferred.raw_output_contents[0], dtype="<i8").tolist() == [64]


def http(played, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://{played.address('http')}{path}",
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=ANSWER_TIMEOUT_S) as response:
        return response.status, json.loads(response.read())


def test_http_ready_v1_add_and_v2_infer_on_each_model(played):
    assert http(played, "/v2/health/ready") == (200, {"ready": True})
    status, added = http(played, "/v1/add?a=36&b=28")
    assert status == 200 and (added["sum"], added["answer"]) == (64, "00064")
    for model in MODELS:
        inputs = [{"name": n, "datatype": "INT64", "shape": [1], "data": [v]} for n, v in (("a", 36), ("b", 28))]
        status, inferred = http(played, f"/v2/models/{model}/infer", {"inputs": inputs, "outputs": [{"name": "sum"}]})
        assert status == 200 and [(o["name"], o["data"]) for o in inferred["outputs"]] == [("sum", [64])]


def test_metrics_has_the_adder_families(played):
    with urllib.request.urlopen(f"http://{played.address('metrics')}/metrics", timeout=ANSWER_TIMEOUT_S) as response:
        names = {family.name for family in text_string_to_metric_families(response.read().decode())}
    assert {"adder_model_ready", "adder_answers", "adder_request_duration_seconds", "adder_workers"} <= names


# ---- inside: the manifest's settings in effect ---------------------------------------------------


def test_the_config_in_effect_is_the_manifests(pytestconfig, played):
    """The server's "starting" record lists its whole config: exactly what the image's ENV, the
    ConfigMap (base/) or the env list (ServingRuntime) and ADDER_WORKERS from limits.cpu make of it."""
    env = declared_env(played)
    started = next(r for r in log_records(played) if r["message"] == "starting")
    assert started["config"] == {k: str(v) for k, v in vars(from_env(env)).items()}
    say(pytestconfig, played, "config in effect = the manifest's: " + ", ".join(
        f"{k}={env[k]}" for k in ("ADDER_MAX_BATCH_SIZE", "ADDER_MAX_QUEUE_DELAY_US", "ADDER_GRACE_SECONDS",
                                  "ADDER_WORKERS")))


def test_every_server_process_runs_as_the_manifests_uid(played):
    assert str(played.container()["securityContext"]["runAsUser"]) == UID
    listening = next(r for r in log_records(played) if r["message"] == "listening")
    assert listening["workers"] == int(declared_env(played)["ADDER_WORKERS"]) == len(listening["pids"])
    for pid in [1, *listening["pids"]]:
        status = in_container(played, "cat", f"/proc/{pid}/status").stdout
        ids = {line.split()[0]: line.split()[1:] for line in status.splitlines() if line.startswith(("Uid:", "Gid:"))}
        assert ids == {"Uid:": [UID] * 4, "Gid:": [UID] * 4}, (pid, ids)  # runAsUser and runAsGroup: 10001


def test_no_capabilities_no_new_privileges_and_a_seccomp_filter(played):
    """capabilities drop ALL, allowPrivilegeEscalation false; RuntimeDefault seccomp (podman 4.3 ignores
    the field and applies its own default profile, which is the runtime's default)."""
    context = played.container()["securityContext"]
    assert (context["capabilities"]["drop"], context["allowPrivilegeEscalation"]) == (["ALL"], False)
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    status = dict(line.split(":\t", 1) for line in in_container(played, "cat", "/proc/1/status").stdout.splitlines())
    assert {k: status[k] for k in ("CapPrm", "CapEff", "CapBnd")} == dict.fromkeys(("CapPrm", "CapEff", "CapBnd"),
                                                                                   "0" * 16)
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2")  # 2: a seccomp filter is in force


def test_the_root_is_read_only_and_tmp_writable(played):
    root = in_container(played, "touch", "/written-by-test")
    assert root.returncode != 0 and "Read-only file system" in root.stderr
    assert in_container(played, "touch", "/tmp/written-by-test").returncode == 0


# ---- last: down, and nothing left ----------------------------------------------------------------


def test_kube_down_leaves_nothing(pytestconfig, played, request):
    if request.session.testsfailed > FAILED_BEFORE[played.name]:
        say(pytestconfig, played, f"checks failed; the pod's log before `kube down`:\n{logs(played)}")
    pod_id = podman("pod", "inspect", "--format", "{{.Id}}", played.pod).stdout.strip()
    containers = podman("ps", "-a", "-q", "--no-trunc", "--filter", f"pod={pod_id}").stdout.split()
    volumes = [m["Name"] for m in json.loads(podman("inspect", "--format", "{{json .Mounts}}",
                                                    played.container_name()).stdout) if m["Type"] == "volume"]
    assert len(containers) == 2 and volumes  # the server and podman's infra container; the emptyDir
    down = play_down(played, FOLDER)
    assert down.returncode == 0, down.stderr
    assert podman("pod", "exists", pod_id).returncode == 1
    assert [c for c in containers if podman("container", "exists", c).returncode != 1] == []
    assert [v for v in volumes if podman("volume", "exists", v).returncode != 1] == []
