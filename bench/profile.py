"""`python -m bench.profile` (`make profile`): where a request's server CPU goes under concurrent load.

Starts a server (service.process.ServerProcess) and, per method, drives `--concurrency` closed-loop
clients (bench.endtoend's pool) three times over:
  1. unprofiled: requests/s and server CPU per request (bench.proctime over the middle of the run,
     divided by the requests the server's own request histogram counted meanwhile);
  2. under `py-spy record --gil`: the Python side, every sample the thread holding the GIL, sorted into
     parts by bench.stacks (handler, validation, batcher, metrics, gRPC's Python server, ...);
  3. under `perf record` (when perf is installed and allowed): all of the process's CPU by shared
     object, which shows what py-spy cannot: gRPC's C core, ONNX Runtime, the kernel.
Writes the raw stacks (collapsed format: speedscope opens them), perf reports, and summary.md.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from bench.clients import ADD, MODEL_INFER
from bench.endtoend import ClientPool, Scenario
from bench.proctime import cpu_seconds
from bench.report import load_text, machine
from bench.stacks import Profile, dso_part, read_perf_dsos, read_raw
from contract import SPARSE_MODEL
from service.process import ONE_PROCESS, ServerProcess

MARGIN_S = 0.5  # left out at both ends of a run: clients starting and stopping


def served(metrics_url: str, method: str) -> float:
    """Requests of `method` the server has answered so far (adder_request_duration_seconds_count)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "adder_request_duration_seconds":
            total += sum(s.value for s in family.samples
                         if s.name.endswith("_count") and s.labels.get("method") == method)
    return total


class Load:
    """Clients running in the background for `seconds`; `window()` times what runs in its middle."""

    def __init__(self, pool: ClientPool, server: ServerProcess, method: str, clients: int, seconds: float):
        self.scenario = Scenario("profile", method, SPARSE_MODEL, clients)
        self.server, self.method, self.seconds = server, method, seconds
        self._thread = threading.Thread(target=pool.run, args=(self.scenario, server.target, 10**9, seconds, 5, 10.0))

    def __enter__(self) -> "Load":
        self._thread.start()
        time.sleep(0.2 + 0.01 * self.scenario.concurrency + MARGIN_S)  # endtoend's start delay, then margin
        return self

    def __exit__(self, *exc) -> None:
        self._thread.join()

    def counted(self) -> tuple[float, float]:
        """(server CPU seconds, requests answered) now."""
        return cpu_seconds(self.server.pid), served(self.server.metrics_url, self.method)

    @property
    def window(self) -> float:
        return self.seconds - 2 * MARGIN_S


def plain_run(pool, server, method, clients, seconds) -> dict:
    with Load(pool, server, method, clients, seconds) as load:
        cpu0, n0 = load.counted()
        time.sleep(load.window)
        cpu1, n1 = load.counted()
    return {"requests_per_s": (n1 - n0) / load.window, "cpu_us_per_request": 1e6 * (cpu1 - cpu0) / max(n1 - n0, 1),
            "cores_busy": (cpu1 - cpu0) / load.window, "errors": load.scenario.errors}


def pyspy_run(pool, server, method, clients, seconds, rate: int, out: Path) -> dict:
    """py-spy --gil over the middle of a run; the raw stacks go to `out`."""
    with Load(pool, server, method, clients, seconds) as load:
        _, n0 = load.counted()
        spy = subprocess.run([_pyspy(), "record", "--gil", "--nonblocking", "-r", str(rate), "-d",
                              str(max(1, int(load.window))), "-f", "raw", "-o", str(out), "-p", str(server.pid)],
                             capture_output=True, text=True)
        _, n1 = load.counted()
    if spy.returncode != 0:
        raise RuntimeError(f"py-spy failed: {spy.stderr.strip()[-400:]}")
    profile = read_raw(out.read_text())
    seconds_held = profile.samples / rate
    return {"profile": profile, "requests": n1 - n0, "gil_us_per_request": 1e6 * seconds_held / max(n1 - n0, 1)}


def perf_run(pool, server, method, clients, seconds, out: Path) -> dict | None:
    """perf over the middle of a run, by shared object; None when perf is missing or not allowed."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    with Load(pool, server, method, clients, seconds) as load:
        record = subprocess.run([perf, "record", "-e", "cpu-clock", "-F", "999", "-p", str(server.pid), "-o",
                                 str(out), "--", "sleep", str(load.window)], capture_output=True, text=True)
    if record.returncode != 0:
        return None
    report = subprocess.run([perf, "report", "-i", str(out), "--sort", "dso", "--stdio"], capture_output=True,
                            text=True)
    (out.with_suffix(".txt")).write_text(report.stdout)
    shares: dict[str, float] = {}
    for dso, share in read_perf_dsos(report.stdout).items():
        shares[dso_part(dso)] = shares.get(dso_part(dso), 0.0) + share
    return shares


def _pyspy() -> str:
    beside = Path(sys.executable).with_name("py-spy")  # the venv's own, installed with the bench extra
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy not found: pip install -e '.[bench]'")
    return found


def _table(rows: list[tuple[str, float]], header: tuple[str, str]) -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.1f} |" for name, value in rows]
    return lines


def summary(method: str, plain: dict, spy: dict, dsos: dict | None, top: int) -> list[str]:
    profile: Profile = spy["profile"]
    lines = [f"### {method}", "",
             f"{plain['requests_per_s']:,.0f} requests/s unprofiled, server CPU {plain['cpu_us_per_request']:.0f} us "
             f"per request ({plain['cores_busy']:.2f} cores busy); the GIL held {spy['gil_us_per_request']:.0f} us "
             f"per request under py-spy ({profile.samples} samples).", ""]
    parts = [(p, 100 * n / profile.samples) for p, n in profile.parts.most_common()]
    lines += ["Python side (samples holding the GIL), by part:", ""] + _table(parts, ("part", "% of GIL samples"))
    leaves = [(f"`{leaf}`", 100 * n / profile.samples) for leaf, n in profile.leaves.most_common(top)]
    lines += ["", f"Top {top} innermost frames (self):", ""] + _table(leaves, ("frame", "%"))
    if dsos:
        lines += ["", "All server CPU (perf, cpu-clock), by shared object:", ""]
        lines += _table(sorted(dsos.items(), key=lambda kv: -kv[1]), ("part", "% of CPU samples"))
    return lines + [""]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("--repository", default=os.environ.get("ADDER_MODEL_REPOSITORY", "model_repository"))
    parser.add_argument("--out", default="bench_results/profile")
    parser.add_argument("--methods", default=f"{ADD},{MODEL_INFER}")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0, help="per run; each method runs three times")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--client-processes", type=int, default=4)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--server-arg", action="append", default=[], dest="server_args")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    lines = [f"# Server CPU profile, {args.concurrency} clients", "",
             f"CPU {info['cpu']} ({info['usable_cpus']} usable, clients on the same cores), load average at start "
             f"{load_text(info)}; server "
             f"{' '.join(args.server_args) or 'defaults'}.", ""]
    results = {}
    with ServerProcess(Path(args.repository), out / "server.log", 64, 1, extra_args=(*ONE_PROCESS, *args.server_args)) as server:
        pool = ClientPool(min(args.client_processes, args.concurrency))
        try:
            for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
                run = (pool, server, method, args.concurrency, args.seconds)
                plain = plain_run(*run)
                spy = pyspy_run(*run, args.rate, out / f"{method}.pyspy.txt")
                dsos = perf_run(*run, out / f"{method}.perf.data")
                lines += summary(method, plain, spy, dsos, args.top)
                results[method] = {"plain": plain, "gil_us_per_request": spy["gil_us_per_request"],
                                   "parts": dict(spy["profile"].parts), "samples": spy["profile"].samples,
                                   "dsos": dsos}
        finally:
            pool.close()
    text = "\n".join(lines)
    print(text)
    (out / "summary.md").write_text(text + "\n")
    (out / "profile.json").write_text(json.dumps({"machine": info, "settings": vars(args), "methods": results},
                                                 indent=2) + "\n")
    print(f"wrote {out / 'summary.md'} and the raw stacks beside it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
