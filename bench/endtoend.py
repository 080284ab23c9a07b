"""End-to-end scenarios against one server: the floor RPC and Add per model at each concurrency, AddBatch."""

# Clients run in a pool of spawned worker processes, each with threads sharing one channel. Threads in
# one process share its GIL, so a single client process stops scaling long before the server does;
# spreading 64 clients over a few processes measures the server instead of the client. On a small
# machine the clients still share the CPU with the server: the floor (health Check) is measured with
# the very same clients, which is why the targets are ratios to it.

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

from bench.clients import ADD, ADD_BATCH, ADD_HTTP, CHECK, Job, ping, run_job
from bench.stats import summary

FLOOR = "floor"  # the model column of the health Check rows


@dataclass
class Scenario:
    server: str  # "batching" | "no-batching" | "target"
    method: str
    model: str
    concurrency: int
    rows: int = 1
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    errors: int = 0
    wrong: int = 0
    first_error: str = ""
    mean_batch: float | None = None  # rows per session.run on the server during this scenario
    skipped: str = ""

    @property
    def label(self) -> str:
        who = FLOOR if self.method == CHECK else self.model
        rows = f" x{self.rows} rows" if self.method == ADD_BATCH else ""
        return f"{self.server:<11} {self.method:<8} {who:<12} {self.concurrency:>3} clients{rows}"

    @property
    def throughput(self) -> float | None:
        return len(self.latencies) / self.seconds if self.seconds > 0 and self.latencies else None

    def to_json(self) -> dict:
        out = {"server": self.server, "method": self.method, "model": self.model or FLOOR,
               "concurrency": self.concurrency, "rows_per_call": self.rows, "calls": len(self.latencies),
               "seconds": self.seconds, "errors": self.errors, "wrong_answers": self.wrong,
               "latency": summary(self.latencies), "calls_per_second": self.throughput,
               "rows_per_second": self.throughput * self.rows if self.throughput else None,
               "mean_server_batch": self.mean_batch}
        if self.first_error:
            out["first_error"] = self.first_error
        if self.skipped:
            out["skipped"] = self.skipped
        return out


class ClientPool:
    """Spawned (not forked: gRPC does not survive fork) worker processes, warmed up before any timing."""

    def __init__(self, processes: int):
        self.processes = processes
        self.executor = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))
        # Occupy every worker at once so all of them are spawned and have imported grpc.
        list(self.executor.map(_ping_slowly, range(processes)))

    def run(self, scenario: Scenario, target: str, calls: int, seconds: float, warmup_calls: int,
            timeout_s: float, http_target: str = "") -> None:
        """Fill `scenario` with the latencies of up to `calls` calls made within `seconds`."""
        n_procs = min(self.processes, scenario.concurrency)
        threads = [scenario.concurrency // n_procs + (i < scenario.concurrency % n_procs) for i in range(n_procs)]
        per_thread = max(1, -(-calls // scenario.concurrency))
        # Long enough for every thread to connect and warm up; a late thread starts late, which
        # only widens the measured window (a conservative throughput).
        start_at = time.time() + 0.2 + 0.01 * scenario.concurrency + 0.005 * warmup_calls * scenario.rows / 64
        jobs = [Job(target, scenario.method, scenario.model, n, per_thread, start_at, start_at + seconds,
                    warmup_calls, scenario.rows, timeout_s, seed=i, http_target=http_target)
                for i, n in enumerate(threads)]
        parts = list(self.executor.map(run_job, jobs))
        scenario.latencies = [x for p in parts for x in p["latencies"]]
        scenario.seconds = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
        scenario.errors = sum(p["errors"] for p in parts)
        scenario.wrong = sum(p["wrong"] for p in parts)
        scenario.first_error = next((p["first_error"] for p in parts if p["first_error"]), "")

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


def _ping_slowly(_: int) -> int:
    time.sleep(0.3)  # keeps this worker busy so the next ping goes to another process
    return ping()


def plan(server: str, models: list[str], concurrency: list[int], batch_rows: int, with_add_batch: bool,
         with_http: bool = False) -> list[Scenario]:
    """The scenarios for one server: floor, then each model, at each concurrency (over gRPC, then over
    HTTP/REST when asked); then AddBatch."""
    scenarios = [Scenario(server, CHECK, "", c) for c in concurrency]
    scenarios += [Scenario(server, ADD, model, c) for model in models for c in concurrency]
    if with_http:
        scenarios += [Scenario(server, ADD_HTTP, model, c) for model in models for c in concurrency]
    if with_add_batch:
        scenarios += [Scenario(server, ADD_BATCH, model, 1, rows=batch_rows) for model in models]
    return scenarios
