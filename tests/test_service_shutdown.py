"""`python -m service` drains on SIGTERM: health NOT_SERVING, in-flight requests finish, exit code 0."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from fixtures.fakes import HANG_S, eventually
from fixtures.service_servers import stop_bound
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]


def read_lines(stream, lines: queue.Queue) -> None:
    for line in stream:
        lines.put(line)


def wait_for(lines: queue.Queue, message: str, seen: list) -> dict:
    while True:
        line = lines.get(timeout=HANG_S)
        seen.append(line)
        record = json.loads(line)  # every line the server writes is JSON
        if record["message"] == message:
            return record


def inflight(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=HANG_S) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("adder_inflight_requests "):
                return float(line.split()[1])
    return 0.0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigterm_finishes_in_flight_requests_and_exits_zero(fixture_repository, workers):
    env = {**os.environ, "ADDER_MODEL_REPOSITORY": str(fixture_repository), "ADDER_HOST": "127.0.0.1",
           "ADDER_WORKERS": workers,
           "ADDER_GRPC_PORT": "0", "ADDER_METRICS_PORT": "0", "ADDER_HTTP_PORT": "0", "ADDER_GRACE_SECONDS": "30",
           # Requests wait up to 60 s for a batch to fill: they are certainly in flight at SIGTERM.
           "ADDER_MAX_QUEUE_DELAY_US": "60000000", "ADDER_QUEUE_DELAY_POLICY": "always"}
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=env, stderr=subprocess.PIPE,
                               text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=read_lines, args=(process.stderr, lines), daemon=True).start()
    seen: list[str] = []
    try:
        listening = wait_for(lines, "listening", seen)
        loaded = wait_for(lines, "models loaded", seen)
        assert loaded["ready"] == ["adder-dense", "adder-sparse"]
        with grpc.insecure_channel(f"127.0.0.1:{listening['grpc_port']}") as channel:
            stub = adder_pb2_grpc.AdderStub(channel)
            calls = [stub.Add.future(adder_pb2.AddRequest(a=a, b=2 * a), timeout=120) for a in range(4)]
            # Two over HTTP too: the drain waits for them the same way.
            rest = ThreadPoolExecutor(2).map(
                lambda a: json.load(urllib.request.urlopen(
                    f"http://127.0.0.1:{listening['http_port']}/v1/add?a={a}&b=1", timeout=120))["sum"], (5, 6))
            assert eventually(lambda: inflight(listening["metrics_port"]) == len(calls) + 2)
            process.send_signal(signal.SIGTERM)
            assert [call.result().sum for call in calls] == [0, 3, 6, 9]
            assert list(rest) == [6, 7]
        assert process.wait(timeout=stop_bound(30)) == 0
        wait_for(lines, "stopped", seen)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    messages = [json.loads(line)["message"] for line in seen]
    assert messages.index("signal received, shutting down") < messages.index("draining") < messages.index("stopped")


def test_a_missing_repository_stops_start_up_with_exit_code_1(tmp_path):
    result = subprocess.run([sys.executable, "-m", "service", "--model-repository", str(tmp_path / "absent"),
                             "--grpc-port", "0", "--metrics-port", "-1", "--http-port", "-1"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stderr.splitlines()]
    failure = next(r for r in records if r["message"] == "cannot start")
    assert failure["level"] == "error" and "absent" in failure["reason"] and "is not a folder" in failure["reason"]
