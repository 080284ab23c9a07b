"""`python -m bench.compare --before DIR`: the server of another checkout against this one, side by side.

Both servers (each `python -m service` with its own tree first on sys.path, on the same model
repository) run at once; each round measures both, in alternating order: the sequential p50 and
server CPU per call of health Check, Add and ModelInfer (bench.requestpath's blocks), then 16 clients
(bench.endtoend's pool) for Add and for ModelInfer with their server CPU per request. Printed: the
medians over rounds and of the per-round ratio after / before, and each server's three request-path
ratios. For a change to the request path, where the machine's drift between two separate runs is
larger than the change.
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import grpc
import numpy as np

from bench.clients import ADD, MODEL_INFER
from bench.endtoend import ClientPool, Scenario
from bench.proctime import cpu_seconds
from bench.report import load_text, machine, write_rounds
from bench.requestpath import CHECK, INFER, block, callers, ratios
from contract import SPARSE_MODEL
from service.process import ONE_PROCESS, ServerProcess

BEFORE, AFTER = "before", "after"
HERE = str(Path(__file__).resolve().parents[1])


def server_of(tree: str, repository: Path, log_path: Path) -> ServerProcess:
    """`python -m service` as `tree` has it (its own service/, contract/ and generated stubs)."""
    server = ServerProcess(repository, log_path, 64, 1, extra_args=ONE_PROCESS)
    at = server.argv.index("-m")
    server.argv[at:at + 2] = ["-c", f"import sys; sys.path.insert(0, {tree!r}); import runpy; "
                                    "runpy.run_module('service', run_name='__main__', alter_sys=True)"]
    return server


def measure(server: ServerProcess, pool: ClientPool, calls: int, clients: int, seconds: float) -> dict[str, float]:
    found = {}
    with grpc.insecure_channel(server.target) as channel:
        call = callers(channel, SPARSE_MODEL)
        for kind in (CHECK, ADD, INFER):
            p50, cpu = block(call[kind], calls, server.pid)
            found[f"sequential {kind} p50 us"] = 1e6 * p50
            found[f"sequential {kind} server CPU us/call"] = 1e6 * cpu
    for method in (ADD, MODEL_INFER):
        scenario = Scenario("compare", method, SPARSE_MODEL, clients)
        before = cpu_seconds(server.pid)
        pool.run(scenario, server.target, 10**9, seconds, 5, 10.0)
        cpu = cpu_seconds(server.pid) - before
        if scenario.errors:
            raise RuntimeError(f"{method}: {scenario.errors} errors, first {scenario.first_error}")
        found[f"{clients} clients {method} req/s"] = scenario.throughput or 0.0
        # the clients' warm-up calls are inside the CPU window: counted too
        found[f"{clients} clients {method} server CPU us/req"] = 1e6 * cpu / (len(scenario.latencies) + clients * 5)
    return found


def report(rounds: list[dict[str, dict[str, float]]]) -> list[str]:
    lines = ["| figure | before | after | after / before |", "| --- | ---: | ---: | ---: |"]
    for key in rounds[0][BEFORE]:
        before = np.array([r[BEFORE][key] for r in rounds])
        after = np.array([r[AFTER][key] for r in rounds])
        lines.append(f"| {key} | {np.median(before):,.0f} | {np.median(after):,.0f} | "
                     f"{np.median(after / before):.3f} |")
    for name in (BEFORE, AFTER):
        per_kind = {kind: [(r[name][f"sequential {kind} p50 us"], r[name][f"sequential {kind} server CPU us/call"])
                           for r in rounds] for kind in (CHECK, ADD, INFER)}
        lines.append(f"{name}: " + "; ".join(f"{c.name} {c.measured:.2f}x" for c in ratios(per_kind)))
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="a checkout of the project (e.g. a `git worktree` of main)")
    parser.add_argument("--after", default=HERE, help="another checkout [default: this one]")
    parser.add_argument("--repository", default=os.environ.get("ADDER_MODEL_REPOSITORY", "model_repository"))
    parser.add_argument("--out", default="bench_results")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=400, help="sequential calls per kind per round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=4.0, help="per loaded run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repository = Path(args.repository).resolve()
    info = machine()
    rounds = []
    with server_of(str(Path(args.before).resolve()), repository, out / "server-before.log") as before, \
            server_of(str(Path(args.after).resolve()), repository, out / "server-after.log") as after:
        servers = {BEFORE: before, AFTER: after}
        pool = ClientPool(min(4, args.clients))
        try:
            for server in servers.values():  # warm-up
                measure(server, pool, 100, args.clients, 1.0)
            for r in range(args.rounds):
                order = [BEFORE, AFTER] if r % 2 == 0 else [AFTER, BEFORE]
                rounds.append({name: measure(servers[name], pool, args.calls, args.clients, args.seconds)
                               for name in order})
                print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        finally:
            pool.close()
    lines = [f"before {args.before} vs after {args.after}, {args.rounds} interleaved rounds; CPU {info['cpu']} "
             f"({info['usable_cpus']} usable), load average at start "
             f"{load_text(info)}", ""] + report(rounds)
    print("\n".join(lines))
    write_rounds(out / "compare.json", info, args, rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
