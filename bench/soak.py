"""`python -m bench.soak`: many clients for a while against a real server process; no error, every
answer a+b, and the server's resident memory flat after warm-up. Prints latency, throughput and RSS."""

# The clients are bench.clients' closed loops (each thread: call, check the answer, call again) in
# bench.endtoend's spawned worker processes; the server is service.process's child. The
# models are spread over the client processes (process i sends to models[i % len(models)]).

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.clients import ADD, Job, run_job
from bench.endtoend import ClientPool
from bench.report import machine
from service.process import ServerError, ServerProcess, process_tree
from bench.stats import ms, summary
from contract import MODELS

MAX_RSS_GROWTH = 0.10  # after warm-up, resident memory may grow by less than this fraction


def rss_bytes(pid: int) -> int:
    """Resident set size of a server: the process and its workers, from /proc/<pid>/status (VmRSS, in kB)."""
    total = 0
    for process in process_tree(pid):
        for line in Path(f"/proc/{process}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    if not total:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return total


@dataclass
class SoakResult:
    clients: int
    seconds: float  # measured window, first call to last answer
    calls: int
    errors: int
    wrong: int
    first_error: str
    latency: dict  # bench.stats.summary of per-call seconds
    calls_per_second: float
    warmup_calls: int
    warmup_errors: int
    rss_before: int  # bytes, after warm-up
    rss_after: int  # bytes, after the soak
    rss_peak: int  # bytes, highest sample during the soak
    rss_samples: list[int] = field(default_factory=list)  # one a second

    @property
    def rss_growth(self) -> float:
        return (self.rss_after - self.rss_before) / self.rss_before

    def problems(self, max_rss_growth: float = MAX_RSS_GROWTH) -> list[str]:
        """Why the soak failed; empty when it passed."""
        found = []
        if self.calls == 0:
            found.append("no call completed")
        if self.errors or self.warmup_errors:
            found.append(f"{self.errors + self.warmup_errors} errors (first: {self.first_error})")
        if self.wrong:
            found.append(f"{self.wrong} wrong answers")
        if self.rss_growth >= max_rss_growth:
            found.append(f"resident memory grew {self.rss_growth:.1%} (limit {max_rss_growth:.0%})")
        return found


def _phase(pool: ClientPool, target: str, models: list[str], clients: int, seconds: float,
           timeout_s: float, seed: int, calls_per_client: int | None = None) -> list[dict]:
    """All clients, closed loop, for `seconds`, or for exactly `calls_per_client` calls each (then no
    time limit); one result dict per client process."""
    n_procs = min(pool.processes, clients)
    threads = [clients // n_procs + (i < clients % n_procs) for i in range(n_procs)]
    start_at = time.time() + 0.3 + 0.01 * clients
    calls, stop_at = (1 << 40, start_at + seconds) if calls_per_client is None else (calls_per_client, math.inf)
    jobs = [Job(target, ADD, models[i % len(models)], n, calls, start_at, stop_at,
                warmup_calls=2, timeout_s=timeout_s, seed=seed + i) for i, n in enumerate(threads)]
    return list(pool.executor.map(run_job, jobs))


class _RssSampler(threading.Thread):
    def __init__(self, pid: int, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.samples: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self.samples.append(rss_bytes(self.pid))


def soak(target: str, server_pid: int, pool: ClientPool, models: list[str], clients: int, seconds: float,
         warmup_seconds: float, timeout_s: float = 10.0, seed: int = 0, calls_per_client: int | None = None,
         warmup_calls_per_client: int | None = None) -> SoakResult:
    """Warm up, read the server's RSS, run the soak while sampling RSS, read it again.

    `calls_per_client`, `warmup_calls_per_client`: run that phase by count instead of for its seconds, so
    the work done (and what is checked) does not depend on the machine's speed."""
    warm = _phase(pool, target, models, clients, warmup_seconds, timeout_s, seed, warmup_calls_per_client)
    rss_before = rss_bytes(server_pid)
    sampler = _RssSampler(server_pid)
    sampler.start()
    parts = _phase(pool, target, models, clients, seconds, timeout_s, seed + 1000, calls_per_client)
    sampler.done.set()
    sampler.join()
    rss_after = rss_bytes(server_pid)
    latencies = [x for p in parts for x in p["latencies"]]
    window = max(p["ended"] for p in parts) - min(p["started"] for p in parts)
    return SoakResult(
        clients=clients, seconds=window, calls=len(latencies), errors=sum(p["errors"] for p in parts),
        wrong=sum(p["wrong"] for p in parts),
        first_error=next((p["first_error"] for p in warm + parts if p["first_error"]), ""),
        latency=summary(latencies), calls_per_second=len(latencies) / window if window > 0 else 0.0,
        warmup_calls=sum(len(p["latencies"]) for p in warm), warmup_errors=sum(p["errors"] for p in warm),
        rss_before=rss_before, rss_after=rss_after, rss_peak=max([rss_after, *sampler.samples]),
        rss_samples=sampler.samples)


def report(result: SoakResult, models: list[str]) -> str:
    mib = 1024 * 1024
    lat = result.latency
    lines = [
        f"soak: {result.clients} clients, Add on {', '.join(models)}, {result.seconds:.1f} s measured "
        f"(after {result.warmup_calls:,} warm-up calls)",
        f"  calls        {result.calls:,}  errors {result.errors + result.warmup_errors}  wrong answers {result.wrong}",
        f"  latency ms   p50 {ms(lat.get('p50'))}  p99 {ms(lat.get('p99'))}  max {ms(lat.get('max'))}",
        f"  throughput   {result.calls_per_second:,.0f} req/s",
        f"  server RSS   before {result.rss_before / mib:.1f} MiB  after {result.rss_after / mib:.1f} MiB  "
        f"peak {result.rss_peak / mib:.1f} MiB  growth {result.rss_growth:+.1%}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", default=os.environ.get("ADDER_MODEL_REPOSITORY", "model_repository"))
    parser.add_argument("--clients", type=int, default=64, help="concurrent closed-loop clients [default 64]")
    parser.add_argument("--seconds", type=float, default=60.0, help="soak duration [default 60]")
    parser.add_argument("--warmup-seconds", type=float, default=10.0,
                        help="same load before the RSS baseline is read [default 10]")
    parser.add_argument("--calls", type=int, default=None,
                        help="calls per client instead of --seconds (and --warmup-calls instead of --warmup-seconds)")
    parser.add_argument("--warmup-calls", type=int, default=None, help="warm-up calls per client")
    parser.add_argument("--client-processes", type=int, default=4, help="processes the clients run in [default 4]")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated, spread over the client "
                                                                   "processes [default both]")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of every call, s [default 10]")
    parser.add_argument("--max-rss-growth", type=float, default=MAX_RSS_GROWTH, help="[default 0.10]")
    parser.add_argument("--log", default="bench_results/soak-server.log",
                        help="the server's log [default bench_results/soak-server.log]")
    parser.add_argument("--json", default="", help="also write the result here")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    try:
        with ServerProcess(Path(args.repository), Path(args.log), max_batch_size=64, intra_op_threads=1) as server:
            pool = ClientPool(min(args.client_processes, args.clients))
            try:
                result = soak(server.target, server.pid, pool, models, args.clients, args.seconds,
                              args.warmup_seconds, args.timeout, calls_per_client=args.calls,
                              warmup_calls_per_client=args.warmup_calls)
            finally:
                pool.close()
    except ServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report(result, models))
    if args.json:
        Path(args.json).write_text(json.dumps({**asdict(result), "rss_growth": result.rss_growth,
                                               "models": models, "machine": machine()}, indent=1))
    problems = result.problems(args.max_rss_growth)
    print("PASS" if not problems else "FAIL: " + "; ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
