"""The peer bench run: peer venvs, the three servers, interleaved rounds, then the table, JSON and PNG."""

import argparse
import math
import os
import shlex
import sys
import time
from pathlib import Path

from bench.peers import KSERVE, MLSERVER, PEER_TITLES, plot, report, venvs
from bench.peers.client_pool import ClientFailure, ClientPool
from bench.proctime import cpu_seconds_coarse
from bench.peers.rounds import Measurement, Step, scenarios, schedule
from bench.peers.servers import Running, start_kserve, start_mlserver, start_ours
from bench.progress import Progress
from bench.report import machine
from contract import INPUT_A, INPUT_B, MANIFEST_FILE, MODEL_FILE, OUTPUT_SUM, model_dir
from contract.manifest import read_manifest
from contract.schema import ContractError
from service.process import ServerError


class PeerBenchError(RuntimeError):
    pass


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        tensors = operand_tensors(Path(args.repository), args.models)
        pythons = {peer: venvs.ensure(peer, log=_say) for peer in args.peers}
    except (PeerBenchError, venvs.VenvError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    info = machine()
    pool, servers = None, []
    try:
        pool = ClientPool(args.client_processes, out / "logs")
        servers = _start_all(args, pythons, out / "logs")
        for server in servers:
            _wait_ready(pool, server, args.models, args.start_timeout)
        measurements = _measure(args, pool, servers, tensors)
    except (PeerBenchError, ClientFailure, ServerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.stop()
        if pool:
            pool.close()
    # Other programs' load during the run: what the figures' noise came from.
    info["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    _write_report(args, out, measurements, info, {s.name: s.settings for s in servers})
    return 0


def operand_tensors(repository: Path, models: list[str]) -> dict[str, dict]:
    """Per model, the client's tensors as its manifest declares them: inputs a, b and output sum."""
    out = {}
    for model in models:
        folder = model_dir(repository, model)
        try:
            manifest = read_manifest(folder / MANIFEST_FILE)
        except ContractError as error:
            raise PeerBenchError(f"{folder}: {error} (run `make models`, or pass --repository)") from None
        if not (folder / MODEL_FILE).is_file():
            raise PeerBenchError(f"{folder / MODEL_FILE} is missing")
        inputs = {t.name: t.datatype for t in manifest.inputs}
        if {INPUT_A, INPUT_B} - set(inputs) or OUTPUT_SUM not in {t.name for t in manifest.outputs}:
            raise PeerBenchError(f"{model}: the manifest lacks inputs {INPUT_A}, {INPUT_B} or output {OUTPUT_SUM}")
        out[model] = {"inputs": [[INPUT_A, inputs[INPUT_A]], [INPUT_B, inputs[INPUT_B]]], "output": OUTPUT_SUM}
    return out


def ours_extra_args(workers: int | None, server_args: str) -> tuple[str, ...]:
    """--workers only when asked for and not 1 (the server's default), then --server-args verbatim."""
    extra = ("--workers", str(workers)) if workers not in (None, 1) else ()
    return extra + tuple(shlex.split(server_args))


def _start_all(args, pythons: dict[str, Path], logs: Path) -> list[Running]:
    repository = Path(args.repository)
    files = {model: model_dir(repository, model) / MODEL_FILE for model in args.models}
    threads = args.intra_op_threads
    servers = []
    try:
        _say("starting our server")
        servers.append(start_ours(repository, logs, args.max_batch_size, threads,
                                  ours_extra_args(args.workers, args.server_args)))
        if KSERVE in pythons:
            _say("starting KServe")
            servers.append(start_kserve(pythons[KSERVE], files, logs, threads))
        if MLSERVER in pythons:
            _say("starting MLServer")
            servers.append(start_mlserver(pythons[MLSERVER], files, logs, threads))
    except BaseException:
        for server in servers:
            server.stop()
        raise
    return servers


def _wait_ready(pool: ClientPool, server: Running, models: list[str], timeout_s: float) -> None:
    """Poll ServerReady + ModelReady over gRPC until every model is served; the process must stay up."""
    deadline = time.monotonic() + timeout_s
    waiting = list(models)
    while waiting:
        if server.exit_code() is not None:
            raise PeerBenchError(f"{server.name} exited with code {server.exit_code()} (log: {server.log_path})")
        if pool.ready(server.target, waiting[0]):
            waiting.pop(0)
            continue
        if time.monotonic() > deadline:
            raise PeerBenchError(f"{server.name} not ready after {timeout_s:.0f} s (log: {server.log_path})")
        time.sleep(0.2)
    _say(f"{PEER_TITLES[server.name]} ready on {server.target}")


def _measure(args, pool: ClientPool, servers: list[Running], tensors: dict) -> list[Measurement]:
    by_name = {s.name: s for s in servers}
    rounds = schedule(args.rounds, args.models, scenarios(args.clients), [s.name for s in servers])
    # No deadline inside Progress: a round once begun is finished, or its ratios would have no pair.
    progress = Progress(sum(map(len, rounds)), math.inf)
    deadline = time.monotonic() + args.time_limit
    measurements = []
    for steps in rounds:
        if steps[0].round > 1 and time.monotonic() > deadline:
            _say(f"time limit: rounds {steps[0].round}..{len(rounds)} skipped")
            break
        for step in steps:
            progress.begin(f"round {step.round}: {step.model}, {step.scenario.label}, {PEER_TITLES[step.server]}")
            measurements.append(_one(args, pool, by_name[step.server], step, tensors[step.model]))
            m = measurements[-1]
            cpu = "" if m.cpu_per_call is None else f", server CPU {m.cpu_per_call * 1e6:.0f} us/call"
            progress.note(f"{m.calls} calls in {m.seconds:.1f} s: {m.throughput:,.0f} req/s, "
                          f"p50 {m.p50 * 1e3:.2f} ms, p99 {m.p99 * 1e3:.2f} ms{cpu}")
    return measurements


def _one(args, pool: ClientPool, server: Running, step: Step, tensors: dict) -> Measurement:
    cpu_before = cpu_seconds_coarse(server.pid)
    try:
        sample = pool.run(server.target, step.model, tensors, step.scenario.clients, args.seconds, args.calls,
                          args.client_warmup, args.timeout, args.seed + step.round)
    except ClientFailure as error:
        raise ClientFailure(f"{PEER_TITLES[server.name]}, {step.model}, {step.scenario.label}: {error} "
                            f"(server log: {server.log_path})") from None
    cpu_after = cpu_seconds_coarse(server.pid)
    calls = len(sample.latencies) + args.client_warmup * step.scenario.clients  # the CPU counts warm-ups too
    cpu = None if cpu_before is None or cpu_after is None else (cpu_after - cpu_before) / calls
    return Measurement.of(step, sample.latencies, sample.seconds, cpu)


def _write_report(args, out: Path, measurements: list[Measurement], info: dict, servers: dict) -> None:
    summary = report.summarize(measurements)
    ratios = report.ratios(measurements)
    heads = {model: report.headline(ratios, model) for model in args.models}
    rounds = len({m.round for m in measurements})
    table = report.markdown(summary, ratios, info, servers, rounds, args.seconds)
    print("\n" + table)
    (out / "peers.md").write_text(table + "\n")
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    report.write_json(out / "peers.json", measurements, summary, ratios, heads, info, servers, settings)
    written = [out / "peers.md", out / "peers.json"]
    for model in args.models:
        png = plot.write(out / f"peers-{model}.png", measurements, model)
        written += [png] if png else []
    print("\nwrote " + ", ".join(map(str, written)))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)

