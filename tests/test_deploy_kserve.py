"""k8s/overlays/kserve: the ServingRuntime and InferenceServices pass the KServe SDK's own models, and
agree with the server (settings, ports, REST health paths) and with the plain Deployment (image, security)."""

import json
import subprocess
import urllib.error
import urllib.request

import pytest

from deploy_support import KSERVE, ROOT, TOOLS_BIN, of_kind, render, server_container, service_env_names
from fixtures.fakes import HANG_S
from fixtures.service_servers import running_server
from service.config import from_env

OBJECTS = render(KSERVE)
(RUNTIME,) = of_kind(OBJECTS, "ServingRuntime")
SERVICES = {s["metadata"]["name"]: s for s in of_kind(OBJECTS, "InferenceService")}
(CONTAINER,) = RUNTIME["spec"]["containers"]
SETTINGS = {e["name"]: e["value"] for e in CONTAINER["env"]}
CONFIG = from_env(SETTINGS)  # the server's own parser accepts every value


def kserve_check(objects: list[dict]) -> list[str]:
    """tests/kserve_check.py in the tools venv, which has the kserve package (it clashes with .venv's pins)."""
    python = TOOLS_BIN / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import kserve"], capture_output=True).returncode:
        pytest.skip(f"{python} lacks the kserve package: run `make tools` (make test does)")
    result = subprocess.run([str(python), str(ROOT / "tests" / "kserve_check.py")], input=json.dumps(objects),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_objects_pass_the_kserve_sdk_models():
    kserve_objects = [o for o in OBJECTS if o["apiVersion"].startswith("serving.kserve.io/")]
    assert len(kserve_objects) == 3
    assert kserve_check(kserve_objects) == []


def test_the_check_catches_mistakes():
    broken = json.loads(json.dumps(SERVICES["sparse-adder"]))
    broken["spec"]["predictor"]["model"]["modelFormat"]["nam"] = "typo"
    broken["spec"]["predictor"]["model"]["ports"] = [{"name": "h2c", "containerPort": "9000"}]
    problems = kserve_check([broken])
    assert any("modelFormat.nam: V1beta1ModelFormat has no such field" in p for p in problems), problems
    assert any("containerPort: expected int, got '9000'" in p for p in problems), problems


def test_runtime_settings_and_ports_are_the_servers():
    assert set(SETTINGS) <= service_env_names(), sorted(set(SETTINGS) - service_env_names())
    assert CONFIG.host == "0.0.0.0" and str(CONFIG.model_repository) == "/models"
    # KServe's conventional ports: REST 8080, gRPC 9000.
    assert (CONFIG.http_port, CONFIG.grpc_port) == (8080, 9000)
    assert [(p["name"], p["containerPort"]) for p in CONTAINER["ports"]] == [("http1", CONFIG.http_port)]
    assert RUNTIME["spec"]["annotations"]["prometheus.kserve.io/port"] == str(CONFIG.metrics_port)
    grpc = SERVICES["sparse-adder-grpc"]["spec"]["predictor"]["model"]
    assert [(p["name"], p["containerPort"]) for p in grpc["ports"]] == [("h2c", CONFIG.grpc_port)]
    assert grpc["protocolVersion"] == "grpc-v2"
    assert int(SETTINGS["ADDER_WORKERS"]) == int(CONTAINER["resources"]["limits"]["cpu"])  # a process per core
    assert int(SETTINGS["ADDER_INTRA_OP_THREADS"]) == 1


def test_inference_services_use_this_runtime():
    formats = {(f["name"], f["version"]) for f in RUNTIME["spec"]["supportedModelFormats"]}
    assert set(SERVICES) == {"sparse-adder", "sparse-adder-grpc"}
    for isvc in SERVICES.values():
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] == RUNTIME["metadata"]["name"]
        assert (model["modelFormat"]["name"], model["modelFormat"]["version"]) in formats
        assert model["protocolVersion"] in RUNTIME["spec"]["protocolVersions"]
        # Longer than the server's drain: it finishes in-flight requests before SIGKILL.
        assert isvc["spec"]["predictor"]["terminationGracePeriodSeconds"] > CONFIG.grace_seconds


def test_same_image_namespace_and_security_as_the_plain_deployment():
    base = render("base")
    (deployment,) = of_kind(base, "Deployment")
    server = server_container(deployment)
    assert CONTAINER["image"] == server["image"]
    assert CONTAINER["securityContext"] == server["securityContext"]
    assert CONTAINER["resources"] == server["resources"]
    (namespace,) = of_kind(OBJECTS, "Namespace")
    (base_namespace,) = of_kind(base, "Namespace")
    assert namespace == base_namespace


def test_probe_paths_answer_on_the_server(fixture_repository):
    probes = {kind: CONTAINER[f"{kind}Probe"]["httpGet"] for kind in ("startup", "readiness", "liveness")}
    assert {p["port"] for p in probes.values()} == {CONFIG.http_port}
    with running_server(fixture_repository, http_port=0) as server:
        for probe in probes.values():
            with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{probe['path']}", timeout=HANG_S) as answer:
                assert answer.status == 200
        server.drain()  # draining: unready (traffic goes elsewhere), still live (not restarted)
        with pytest.raises(urllib.error.HTTPError) as unready:
            urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{probes['readiness']['path']}", timeout=HANG_S)
        assert unready.value.code == 503
        with urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}{probes['liveness']['path']}",
                                    timeout=HANG_S) as answer:
            assert answer.status == 200
