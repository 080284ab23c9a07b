"""`python -m bench.requestpath`: what the request path around the model costs, as three ratios.

One server process (service.process.ServerProcess) and one sequential client in this process. Each
round makes a block of health Check calls, one of Add and one of ModelInfer (one problem, raw INT64),
timing every call and reading the server's CPU time (bench.proctime) before and after each block. The
order of the blocks rotates from round to round, so a change in the machine's load falls on each kind
alike; the ratios are formed per round and their medians printed against the goals (issue #19):

  Add p50 / health Check p50                  <= 1.3   (Check: the cheapest RPC the server has)
  ModelInfer p50 / Add p50                    <= 1.15  (KServe v2 costs little more than our own API)
  server CPU per Add / server CPU per Check   <= 1.5

A last line says how much of the CPU an Add costs over a Check is the model's own run in the server
(the server's adder_inference_duration_seconds during the Add blocks), beside the same batch-1 run
back to back in this process: the part of the gap no request-path change can remove.
"""

import argparse
import json
import os
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bench.clients import infer_request
from bench.proctime import cpu_seconds
from bench.report import load_text, machine
from bench.targets import Check
from contract import MODEL_FILE, SPARSE_MODEL, model_dir
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.generated.inference import grpc_predict_v2_pb2_grpc
from service.process import ONE_PROCESS, ServerProcess
from service.runtime import OnnxModel

CHECK, ADD, INFER = "Check", "Add", "ModelInfer"
KINDS = (CHECK, ADD, INFER)


class WrongAnswer(RuntimeError):
    pass


def callers(channel: grpc.Channel, model: str, seed: int = 0) -> dict[str, Callable[[], None]]:
    """One function per kind making one call; each raises on an error or a wrong answer."""
    health = health_pb2_grpc.HealthStub(channel)
    adder = adder_pb2_grpc.AdderStub(channel)
    inference = grpc_predict_v2_pb2_grpc.GRPCInferenceServiceStub(channel)
    pairs = [(int(x), int(y)) for x, y in np.random.default_rng(seed).integers(0, 100, size=(64, 2))]
    check = health_pb2.HealthCheckRequest(service="")
    adds = [(adder_pb2.AddRequest(a=x, b=y, model=model), x + y) for x, y in pairs]
    infers = [(infer_request(model, x, y), x + y) for x, y in pairs]
    counter = iter(range(1 << 62))

    def call_check() -> None:
        if health.Check(check, timeout=10).status != health_pb2.HealthCheckResponse.SERVING:
            raise WrongAnswer("health Check: not SERVING")

    def call_add() -> None:
        request, expected = adds[next(counter) % len(adds)]
        if adder.Add(request, timeout=10).sum != expected:
            raise WrongAnswer(f"Add {request.a}+{request.b}: wrong sum")

    def call_infer() -> None:
        request, expected = infers[next(counter) % len(infers)]
        response = inference.ModelInfer(request, timeout=10)
        if int(np.frombuffer(response.raw_output_contents[0], dtype="<i8")[0]) != expected:
            raise WrongAnswer("ModelInfer: wrong sum")

    return {CHECK: call_check, ADD: call_add, INFER: call_infer}


def block(call: Callable[[], None], calls: int, pid: int) -> tuple[float, float]:
    """p50 latency and server CPU per call (seconds) of `calls` sequential calls."""
    latencies = np.empty(calls)
    cpu_before = cpu_seconds(pid)
    for i in range(calls):
        start = time.perf_counter()
        call()
        latencies[i] = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu_before
    return float(np.median(latencies)), cpu / calls


def model_runs(metrics_url: str, model: str) -> tuple[float, float]:
    """(seconds, runs) of session.run so far on the server (adder_inference_duration_seconds)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    found = {"_sum": 0.0, "_count": 0.0}
    for family in text_string_to_metric_families(text):
        if family.name == "adder_inference_duration_seconds":
            for sample in family.samples:
                suffix = sample.name[len(family.name):]
                if suffix in found and sample.labels.get("model") == model:
                    found[suffix] += sample.value
    return found["_sum"], found["_count"]


def hot_loop_run(repository: Path, model: str, runs: int = 500) -> float:
    """Median seconds of one batch-1 session.run in this process, back to back (nothing in between)."""
    runtime = OnnxModel(model_dir(repository, model) / MODEL_FILE)
    a, b = np.array([36]), np.array([28])
    for _ in range(50):
        runtime.run(a, b)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        runtime.run(a, b)
        times[i] = time.perf_counter() - start
    return float(np.median(times))


def rounds(server: ServerProcess, call: dict[str, Callable[[], None]], n_rounds: int, calls: int, model: str,
           progress=sys.stderr) -> tuple[dict[str, list[tuple[float, float]]], list[float]]:
    """Per kind, (p50, CPU per call) of each round, the block order rotating each round; and per round
    the server's mean session.run time during the Add block."""
    found: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    model_seconds = []
    for r in range(n_rounds):
        order = KINDS[r % len(KINDS):] + KINDS[:r % len(KINDS)]
        for kind in order:
            before = model_runs(server.metrics_url, model) if kind == ADD else None
            found[kind].append(block(call[kind], calls, server.pid))
            if before is not None:
                seconds, runs = (x - y for x, y in zip(model_runs(server.metrics_url, model), before))
                model_seconds.append(seconds / max(runs, 1))
        line = ", ".join(f"{k} {1e6 * found[k][-1][0]:.0f} us ({1e6 * found[k][-1][1]:.0f} us CPU)" for k in KINDS)
        print(f"round {r + 1}/{n_rounds}: {line}", file=progress, flush=True)
    return found, model_seconds


def ratios(found: dict[str, list[tuple[float, float]]]) -> list[Check]:
    """The three targets, each the median over rounds of that round's ratio."""
    def median_ratio(top: str, bottom: str, index: int) -> float:
        return float(np.median([t[index] / b[index] for t, b in zip(found[top], found[bottom])]))

    def median_us(kind: str, index: int) -> float:
        return 1e6 * float(np.median([x[index] for x in found[kind]]))

    latency = "p50 %s %.0f us, %s %.0f us (medians over rounds)"
    cpu = "server CPU per call: %s %.0f us, %s %.0f us (medians over rounds)"
    return [
        Check("Add p50 / health Check p50", median_ratio(ADD, CHECK, 0), 1.3, "x", at_most=True,
              detail=latency % (ADD, median_us(ADD, 0), CHECK, median_us(CHECK, 0))),
        Check("ModelInfer p50 / Add p50", median_ratio(INFER, ADD, 0), 1.15, "x", at_most=True,
              detail=latency % (INFER, median_us(INFER, 0), ADD, median_us(ADD, 0))),
        Check("server CPU per Add / per Check", median_ratio(ADD, CHECK, 1), 1.5, "x", at_most=True,
              detail=cpu % (ADD, median_us(ADD, 1), CHECK, median_us(CHECK, 1))),
    ]


def model_share(found: dict[str, list[tuple[float, float]]], in_server: list[float], hot: float) -> str:
    """Where the Add - Check gap goes: the model's run in the server, and the same run in a hot loop."""
    gap = 1e6 * float(np.median([a[1] - c[1] for a, c in zip(found[ADD], found[CHECK])]))
    run = 1e6 * float(np.median(in_server))
    return (f"  server CPU per Add - per Check: {gap:.0f} us; of it session.run in the server {run:.0f} us "
            f"(the same run back to back in one process: {1e6 * hot:.0f} us)")


def report(checks: list[Check], info: dict, settings: dict) -> str:
    lines = [f"request path, 1 sequential client, {settings['rounds']} interleaved rounds x {settings['calls']} "
             f"calls per kind, model {settings['model']}, server {' '.join(settings['server_args']) or 'defaults'}",
             f"CPU: {info['cpu']} ({info['usable_cpus']} usable), load average at start "
             f"{load_text(info)}"]
    for c in checks:
        lines.append(f"  {c.name:<34} {c.measured:6.2f}x  goal <= {c.goal:.2f}x  {c.status:<4}  {c.detail}")
    return "\n".join(lines)


def measure(repository: Path, log_path: Path, n_rounds: int, calls: int, warmup: int, model: str,
            server_args: Sequence[str] = ()) -> tuple[list[Check], str]:
    """Start a server, warm every kind up, then the interleaved rounds; the three targets and a line on
    how much of the Add - Check gap is the model's run."""
    with ServerProcess(repository, log_path, 64, 1, extra_args=(*ONE_PROCESS, *server_args)) as server:
        with grpc.insecure_channel(server.target) as channel:
            call = callers(channel, model)
            for kind in KINDS:
                block(call[kind], warmup, server.pid)
            found, in_server = rounds(server, call, n_rounds, calls, model)
    return ratios(found), model_share(found, in_server, hot_loop_run(repository, model))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.requestpath", description=__doc__.split("\n")[0])
    parser.add_argument("--repository", default=os.environ.get("ADDER_MODEL_REPOSITORY", "model_repository"))
    parser.add_argument("--out", default="bench_results", help="folder for requestpath.json and the server log")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--calls", type=int, default=400, help="calls per kind per round")
    parser.add_argument("--warmup", type=int, default=300, help="calls per kind before the rounds")
    parser.add_argument("--model", default=SPARSE_MODEL)
    parser.add_argument("--server-arg", action="append", default=[], dest="server_args",
                        help="an extra flag for the server (repeat), e.g. --server-arg=--max-batch-size=1")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    checks, model_line = measure(Path(args.repository), out / "server-requestpath.log", args.rounds, args.calls,
                                 args.warmup, args.model, args.server_args)
    settings = {k: v for k, v in vars(args).items()}
    print(report(checks, info, settings))
    print(model_line)
    (out / "requestpath.json").write_text(json.dumps(
        {"settings": settings, "machine": info, "targets": [c.to_json() for c in checks],
         "model_share": model_line.strip()}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
