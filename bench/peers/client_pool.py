"""Client worker processes (bench/peers/driver.py), kept for the whole run, spoken to in JSON lines.

Plain subprocesses rather than multiprocessing: a spawned multiprocessing child re-imports the parent's
__main__, which may be service/cli.py (`sparse-adder bench --peers`) and so load our `inference.*`
protos next to tritonclient's. Threads of one process share its GIL, so 16 clients are spread over
several processes: the client must not be what limits the throughput measured.
"""

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench.peers.venvs import ROOT

ANSWER_SLACK_S = 120.0  # a hang bound on each answer, beyond the time the job itself may take


class ClientFailure(RuntimeError):
    """A client saw an RPC error or a wrong answer, or a worker died: the run stops."""


@dataclass
class Sample:
    """One measurement's raw figures: every call's latency (s) and the measured window (s)."""
    latencies: list[float]
    seconds: float


class ClientPool:
    def __init__(self, processes: int, log_dir: Path):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.logs = [log_dir / f"client-{i}.log" for i in range(processes)]
        self.workers = []
        for log in self.logs:
            with open(log, "w") as stderr:
                self.workers.append(subprocess.Popen([sys.executable, "-m", "bench.peers.driver"], cwd=ROOT, env=env,
                                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                                     text=True))
        self._ask_all([(w, {"op": "ping"}) for w in self.workers], 60.0)  # imports done before any timing

    def ready(self, target: str, model: str, timeout_s: float = 2.0) -> bool:
        return self._ask_all([(self.workers[0], {"op": "ready", "target": target, "model": model,
                                                 "timeout_s": timeout_s})], timeout_s * 3)[0]["ready"]

    def run(self, target: str, model: str, tensors: dict, clients: int, seconds: float, calls: int,
            warmup_calls: int, timeout_s: float, seed: int) -> Sample:
        """`clients` closed-loop clients spread over the workers for up to `seconds` and `calls` calls."""
        used = self.workers[:min(len(self.workers), clients)]
        threads = [clients // len(used) + (i < clients % len(used)) for i in range(len(used))]
        # Late enough for every thread to connect and warm up; a late thread only widens the window.
        start_at = time.time() + 0.5 + 0.02 * clients + 0.005 * warmup_calls * max(threads)
        jobs = [(worker, {"op": "run", "target": target, "model": model, "inputs": tensors["inputs"],
                          "output": tensors["output"], "threads": n, "calls_per_thread": -(-calls // clients),
                          "start_at": start_at, "stop_at": start_at + seconds, "warmup_calls": warmup_calls,
                          "timeout_s": timeout_s, "seed": seed * 1000 + i})
                for i, (worker, n) in enumerate(zip(used, threads))]
        parts = self._ask_all(jobs, start_at - time.time() + seconds)
        return Sample([x for p in parts for x in p["latencies"]],
                      max(p["ended"] for p in parts) - min(p["started"] for p in parts))

    def _ask_all(self, requests: list, job_seconds: float) -> list[dict]:
        """Send every request, then read every answer (each worker runs its own at the same time)."""
        for worker, request in requests:
            worker.stdin.write(json.dumps(request) + "\n")
            worker.stdin.flush()
        deadline = time.monotonic() + job_seconds + ANSWER_SLACK_S
        answers = [self._read(worker, deadline) for worker, _ in requests]
        failures = [a["failure"] for a in answers if "failure" in a]
        if failures:
            raise ClientFailure(failures[0])
        return answers

    def _read(self, worker: subprocess.Popen, deadline: float) -> dict:
        readable, _, _ = select.select([worker.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = worker.stdout.readline() if readable else ""
        if not line:
            log = self.logs[self.workers.index(worker)]
            why = "no answer in time" if not readable else f"exited with code {worker.wait()}"
            raise ClientFailure(f"client worker {worker.pid}: {why} (log: {log})")
        return json.loads(line)

    def close(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.stdin.close()  # end of input: the worker's loop ends
        for worker in self.workers:
            try:
                worker.wait(10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
