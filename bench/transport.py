"""`python -m bench.transport`: the sync gRPC server against grpc.aio (bench.aioserver), side by side.

Three servers run at once on the same models: sync, aio with thread-pool handlers, aio with handlers
on the loop (`--inline`). Each round measures all three, each first in turn: the sequential p50 of
health Check, Add and ModelInfer (one client, bench.requestpath's blocks), then the throughput of 16
closed-loop clients (bench.endtoend's pool) for Add and for ModelInfer. Printed: the median over
rounds of each figure and of the per-round ratio to sync.
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
from bench.report import load_text, machine, write_rounds
from bench.requestpath import CHECK, INFER, block, callers
from contract import SPARSE_MODEL
from service.process import ONE_PROCESS, ServerProcess

SYNC, AIO, INLINE = "sync", "aio", "aio-inline"
SEQUENTIAL = (CHECK, ADD, INFER)
LOADED = (ADD, MODEL_INFER)


def aio_process(repository: Path, log_path: Path, inline: bool = False) -> ServerProcess:
    server = ServerProcess(repository, log_path, 64, 1, extra_args=(*ONE_PROCESS, "--inline") if inline else ONE_PROCESS)
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
    others = [name for name in rounds[0] if name != SYNC]
    lines = ["| figure | sync | " + " | ".join(f"{o} | {o} / sync" for o in others) + " |",
             "| --- | ---: |" + " ---: | ---: |" * len(others)]
    for key in rounds[0][SYNC]:
        sync = [r[SYNC][key] for r in rounds]
        cells = [f"{np.median(sync):,.0f}"]
        for other in others:
            values = [r[other][key] for r in rounds]
            cells += [f"{np.median(values):,.0f}", f"{np.median([v / s for v, s in zip(values, sync)]):.2f}x"]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
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
    with ServerProcess(repository, out / "server-sync.log", 64, 1, extra_args=ONE_PROCESS) as sync, \
            aio_process(repository, out / "server-aio.log") as aio, \
            aio_process(repository, out / "server-aio-inline.log", inline=True) as inline:
        servers = {SYNC: sync, AIO: aio, INLINE: inline}
        pool = ClientPool(min(args.client_processes, args.clients))
        try:
            for name, server in servers.items():  # warm-up: connections, ORT, the thread pools
                one_round({name: server}, [name], pool, 100, args.clients, 1.0)
            for r in range(args.rounds):
                names = list(servers)
                order = names[r % len(names):] + names[:r % len(names)]  # each goes first in turn
                rounds.append(one_round(servers, order, pool, args.calls, args.clients, args.seconds))
                print(f"round {r + 1}/{args.rounds}: {json.dumps(rounds[-1])}", file=sys.stderr, flush=True)
        finally:
            pool.close()
    lines = [f"sync grpc.server vs grpc.aio (thread-pool handlers; inline: on the loop), {args.rounds} interleaved "
             f"rounds; CPU {info['cpu']} "
             f"({info['usable_cpus']} usable, clients on the same cores), load average at start "
             f"{load_text(info)}", ""] + table(rounds)
    print("\n".join(lines))
    write_rounds(out / "transport.json", info, args, rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
