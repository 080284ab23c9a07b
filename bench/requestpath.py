"""`python -m bench.requestpath`: what the request path around the model costs, as three ratios.

One server process (service.process.ServerProcess) and one sequential client in this process. Each
round makes a block of health Check calls, one of Add and one of ModelInfer (one problem, raw INT64),
timing every call and reading the server's CPU time (bench.proctime) before and after each block. The
order of the blocks rotates from round to round, so a change in the machine's load falls on each kind
alike; the ratios are formed per round and their medians printed against the goals (issue #19):

  Add p50 / health Check p50                  <= 1.3   (Check: the cheapest RPC the server has)
  ModelInfer p50 / Add p50                    <= 1.15  (KServe v2 costs little more than our own API)
  server CPU per Add / server CPU per Check   <= 1.5
"""

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.clients import infer_request
from bench.proctime import cpu_seconds
from bench.report import machine
from bench.targets import Check
from contract import SPARSE_MODEL
from service.generated.adder.v1 import adder_pb2, adder_pb2_grpc
from service.generated.inference import grpc_predict_v2_pb2_grpc
from service.process import ServerProcess

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


def rounds(server_pid: int, call: dict[str, Callable[[], None]], n_rounds: int, calls: int,
           progress=sys.stderr) -> dict[str, list[tuple[float, float]]]:
    """Per kind, (p50, CPU per call) of each round; the block order rotates each round."""
    found: dict[str, list[tuple[float, float]]] = {kind: [] for kind in KINDS}
    for r in range(n_rounds):
        order = KINDS[r % len(KINDS):] + KINDS[:r % len(KINDS)]
        for kind in order:
            found[kind].append(block(call[kind], calls, server_pid))
        line = ", ".join(f"{k} {1e6 * found[k][-1][0]:.0f} us ({1e6 * found[k][-1][1]:.0f} us CPU)" for k in KINDS)
        print(f"round {r + 1}/{n_rounds}: {line}", file=progress, flush=True)
    return found


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


def report(checks: list[Check], info: dict, settings: dict) -> str:
    lines = [f"request path, 1 sequential client, {settings['rounds']} interleaved rounds x {settings['calls']} "
             f"calls per kind, model {settings['model']}, server {' '.join(settings['server_args']) or 'defaults'}",
             f"CPU: {info['cpu']} ({info['usable_cpus']} usable), load average at start "
             f"{', '.join(f'{x:.2f}' for x in info['load_average_at_start'] or ())}"]
    for c in checks:
        lines.append(f"  {c.name:<34} {c.measured:6.2f}x  goal <= {c.goal:.2f}x  {c.status:<4}  {c.detail}")
    return "\n".join(lines)


def measure(repository: Path, log_path: Path, n_rounds: int, calls: int, warmup: int, model: str,
            server_args: Sequence[str] = ()) -> list[Check]:
    """Start a server, warm every kind up, then the interleaved rounds; the three targets."""
    with ServerProcess(repository, log_path, 64, 1, extra_args=tuple(server_args)) as server:
        with grpc.insecure_channel(server.target) as channel:
            call = callers(channel, model)
            for kind in KINDS:
                block(call[kind], warmup, server.pid)
            return ratios(rounds(server.pid, call, n_rounds, calls))


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
    checks = measure(Path(args.repository), out / "server-requestpath.log", args.rounds, args.calls, args.warmup,
                     args.model, args.server_args)
    settings = {k: v for k, v in vars(args).items()}
    print(report(checks, info, settings))
    (out / "requestpath.json").write_text(json.dumps(
        {"settings": settings, "machine": info, "targets": [c.to_json() for c in checks]}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
