"""Start `python -m service` as a child process on free loopback ports, wait until it serves, stop it.

For programs that drive a real server process: benchmarks, soak runs, tests.
"""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families


# extra_args for a server of one process (no worker supervisor): what request-path measurements profile.
ONE_PROCESS = ("--workers", "1")


class ServerError(RuntimeError):
    pass


class ServerProcess:
    """One server with the given settings; its JSON log goes to `log_path` (kept as a run artifact)."""

    def __init__(self, repository: Path, log_path: Path, max_batch_size: int, intra_op_threads: int,
                 start_timeout_s: float = 180.0, extra_args: tuple[str, ...] = ()):
        self.log_path = log_path
        self.settings = {"max_batch_size": max_batch_size, "intra_op_threads": intra_op_threads}
        # Port 0 and the "listening" log line: no race between picking a free port and binding it.
        self.argv = [sys.executable, "-m", "service", "--model-repository", str(repository), "--host", "127.0.0.1",
                     "--grpc-port", "0", "--metrics-port", "0",
                     "--http-port", "0", "--max-batch-size", str(max_batch_size),
                     "--intra-op-threads", str(intra_op_threads), "--grace-seconds", "2", *extra_args]  # last wins
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.target = ""
        self.http_target = ""  # the HTTP/REST port (Add-HTTP scenarios)
        self.metrics_url = ""
        self.config: dict = {}
        self.ready_models: list[str] = []

    def __enter__(self) -> "ServerProcess":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=log, env=os.environ.copy())
        try:
            self._wait_until_loaded()
            wait_serving(self.target, timeout_s=30)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """SIGTERM (the server drains), then SIGKILL if it has not exited within 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def _wait_until_loaded(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            for record in self._records():
                if record.get("message") == "starting":
                    self.config = record.get("config", {})
                elif record.get("message") == "listening":
                    self.target = f"127.0.0.1:{record['grpc_port']}"
                    if record.get("http_port"):
                        self.http_target = f"127.0.0.1:{record['http_port']}"
                    if record.get("metrics_port"):
                        self.metrics_url = f"http://127.0.0.1:{record['metrics_port']}/metrics"
                elif record.get("message") == "models loaded":
                    self.ready_models = record.get("ready", [])
                    if record.get("failed"):
                        raise ServerError(f"models failed to load: {record['failed']} (log: {self.log_path})")
                    return
            if self.process.poll() is not None:
                raise ServerError(f"server exited with code {self.process.returncode} (log: {self.log_path})")
            time.sleep(0.1)
        raise ServerError(f"server not ready after {self.start_timeout_s:.0f} s (log: {self.log_path})")

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(self, message: str, timeout_s: float = 60.0, after: int = 0, **fields) -> tuple[int, dict]:
        """The first log record at index >= `after` with this message (and these fields), and its index."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            records = self._records()
            for i in range(after, len(records)):
                record = records[i]
                if record.get("message") == message and all(record.get(k) == v for k, v in fields.items()):
                    return i, record
            time.sleep(0.05)
        raise ServerError(f"no {message!r} in the log after {timeout_s:.0f} s (log: {self.log_path})")

    def _records(self) -> list[dict]:
        records = []
        for line in self.log_path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue  # a partly written last line, or a stray non-JSON line
        return records

    def batch_sizes(self) -> dict[str, tuple[float, float]]:
        """Per model: (rows summed, session.run calls) so far, from the adder_batch_size histogram."""
        if not self.metrics_url:
            return {}
        with urllib.request.urlopen(self.metrics_url, timeout=10) as response:
            text = response.read().decode()
        totals: dict[str, list[float]] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "adder_batch_size":
                continue
            for sample in family.samples:
                pair = totals.setdefault(sample.labels.get("model", ""), [0.0, 0.0])
                if sample.name.endswith("_sum"):
                    pair[0] = sample.value
                elif sample.name.endswith("_count"):
                    pair[1] = sample.value
        return {model: (rows, runs) for model, (rows, runs) in totals.items()}


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: a server's supervisor and its worker processes."""
    children = []
    try:  # each thread lists the children it started (a worker restarted from any thread counts)
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += (task / "children").read_text().split()
    except OSError:  # exited meanwhile
        return [] if not Path(f"/proc/{pid}").exists() else [pid]
    return [pid] + [found for child in children for found in process_tree(int(child))]


def wait_serving(target: str, timeout_s: float) -> None:
    """Block until grpc.health.v1 says the whole server ("") is SERVING."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"{target} is not SERVING after {timeout_s:.0f} s")
            time.sleep(0.1)
