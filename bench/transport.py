"""`python -m bench.transport`: the sync gRPC server against grpc.aio (bench.aioserver), side by side.

Both servers run at once on the same models; each round measures both, in alternating order: the
sequential p50 of health Check, Add and ModelInfer (one client, bench.requestpath's blocks), then the
throughput of 16 closed-loop clients (bench.endtoend's pool) for Add and for ModelInfer. Printed: the
median over rounds of each figure and of the per-round ratio aio / sync.
"""

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np

from bench.clients import ADD, MODEL_INFER
from bench.endtoend import ClientPool, Scenario
from bench.report import machine
from bench.requestpath import CHECK, INFER, block, callers
from contract import SPARSE_MODEL
from service.process import ServerProcess

SYNC, AIO = "sync", "aio"
SEQUENTIAL = (CHECK, ADD, INFER)
LOADED = (ADD, MODEL_INFER)


def aio_process(repository: Path, log_path: Path) -> ServerProcess:
    server = ServerProcess(repository, log_path, 64, 1)
    server.argv[server.argv.index("service")] = "bench.aioserver"
    return server


def one_round(servers: dict[str, ServerProcess], order: list[str], pool: ClientPool, calls: int, clients: int,
              seconds: float) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {name: {} for name in servers}
    for name in order:
        server = servers[name]
        with grpc.insecure_channel(server.target) as channel:
            call = callers(channel, SPARSE_MODEL)
            for kind in SEQUENTIAL:
                found[name][f"{kind} p50 us"] = 1e6 * block(call[kind], calls, server.pid)[0]
        for method in LOADED:
            scenario = Scenario(name, method, SPARSE_MODEL, clients)
            pool.run(scenario, server.target, 10**9, seconds, 5, 10.0)
            found[name][f"{method} {clients} clients req/s"] = scenario.throughput or 0.0
            if scenario.errors:
                raise RuntimeError(f"{name} {method}: {scenario.errors} errors, first {scenario.first_error}")
    return found


def table(rounds: list[dict[str, dict[str, float]]]) -> list[str]:
    keys = list(rounds[0][SYNC])
    lines = ["| figure | sync | aio | aio / sync |", "| --- | ---: | ---: | ---: |"]
    for key in keys:
        sync = [r[SYNC][key] for r in rounds]
        aio = [r[AIO][key] for r in rounds]
        ratio = float(np.median([a / s for a, s in zip(aio, sync)]))
        lines.append(f"| {key} | {np.median(sync):,.0f} | {np.median(aio):,.0f} | {ratio:.2f}x |")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__.split("\n")[0])
    parser.add_argument("--repository", default=os.environ.get("ADDER_MODEL_REPOSITORY", "model_repository"))
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per kind per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0, help="per loaded run")
    parser.add_argument("--client-processes", type=int, default=4)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repository = Path(args.repository)
    info = machine()
    rounds = []
    with ServerProcess(repository, out / "server-sync.log", 64, 1) as sync, \
            aio_process(repository, out / "server-aio.log") as aio:
        servers = {SYNC: sync, AIO: aio}
        pool = ClientPool(min(args.client_processes, args.clients))
        try:
            for name, server in servers.items():  # warm-up: connections, ORT, the thread pools
                one_round({name: server}, [name], pool, 100, args.clients, 1.0)
            for r in range(args.rounds):
                order = [SYNC, AIO] if r % 2 == 0 else [AIO, SYNC]
                rounds.append(one_round(servers, order, pool, args.calls, args.clients, args.seconds))
                print(f"round {r + 1}/{args.rounds}: {json.dumps(rounds[-1])}", file=sys.stderr, flush=True)
        finally:
            pool.close()
    lines = [f"sync grpc.server vs grpc.aio (thread-pool handlers), {args.rounds} interleaved rounds; CPU {info['cpu']} "
             f"({info['usable_cpus']} usable, clients on the same cores), load average at start "
             f"{', '.join(f'{x:.2f}' for x in info['load_average_at_start'] or ())}", ""] + table(rounds)
    print("\n".join(lines))
    (out / "transport.json").write_text(json.dumps({"machine": info, "settings": vars(args), "rounds": rounds},
                                                   indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
