"""Run a container's declared Kubernetes probes from the host, as the kubelet would, through published ports.

podman 4.3 runs none of k8s/'s probes (see kube_play's docstring), so `make image-test` runs them here:
the same kind (gRPC grpc.health.v1 Check of `service`, or HTTP GET of `path`), the same port and the same
verdict rules (a probe passes on any success within `failureThreshold` tries `periodSeconds` apart).
Only `timeoutSeconds` is not enforced: beside a stress test it would time the machine, not the server,
so each try gets ANSWER_TIMEOUT_S instead.
"""

import time
import urllib.error
import urllib.request

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ANSWER_TIMEOUT_S = 10.0  # a hang bound per try
DEFAULTS = {"periodSeconds": 10, "failureThreshold": 3}  # Kubernetes' own defaults


def describe(probe: dict) -> str:
    if "grpc" in probe:
        return f"gRPC health Check of {probe['grpc'].get('service', '')!r} on port {probe['grpc']['port']}"
    if "httpGet" in probe:
        return f"HTTP GET {probe['httpGet'].get('path', '/')} on port {probe['httpGet']['port']}"
    return f"an unsupported probe kind: {sorted(probe)}"


def attempt(probe: dict, host_port: dict[int, str]) -> str | None:
    """One try of the probe: None when it passes, else what went wrong."""
    if "grpc" in probe:
        with grpc.insecure_channel(host_port[probe["grpc"]["port"]]) as channel:
            request = health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", ""))
            try:
                status = health_pb2_grpc.HealthStub(channel).Check(request, timeout=ANSWER_TIMEOUT_S).status
            except grpc.RpcError as error:
                return f"{error.code().name}: {error.details()}"
        serving = health_pb2.HealthCheckResponse.SERVING
        return None if status == serving else health_pb2.HealthCheckResponse.ServingStatus.Name(status)
    if "httpGet" in probe:
        get = probe["httpGet"]
        url = f"http://{host_port[get['port']]}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=ANSWER_TIMEOUT_S) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError as error:
            return f"GET {url}: {error}"
        return None if 200 <= status < 400 else f"GET {url}: HTTP {status}"  # the kubelet's success range
    raise NotImplementedError(describe(probe))


def verdict(probe: dict, host_port: dict[int, str]) -> list[str]:
    """The kubelet's verdict on a running container: [] when it passes, else every failed try."""
    failures = []
    for _ in range(probe.get("failureThreshold", DEFAULTS["failureThreshold"])):
        if (failure := attempt(probe, host_port)) is None:
            return []
        failures.append(failure)
        time.sleep(probe.get("periodSeconds", DEFAULTS["periodSeconds"]))
    return failures


def wait_started(probe: dict, host_port: dict[int, str], running, bound_s: float) -> tuple[int, float, str | None]:
    """Try a startup probe every periodSeconds until it passes, the container stops (`running()` false)
    or `bound_s` passes (a hang bound, not the probe's own budget: nothing here asserts speed).
    Returns (tries, seconds, the last failure or None)."""
    start, tries = time.monotonic(), 0
    while True:
        tries += 1
        failure = attempt(probe, host_port)
        if failure is None or not running() or time.monotonic() - start > bound_s:
            return tries, time.monotonic() - start, failure
        time.sleep(probe.get("periodSeconds", DEFAULTS["periodSeconds"]))
