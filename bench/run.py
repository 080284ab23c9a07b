"""The bench run: in-process pairs, then end-to-end scenarios per server, then tables, JSON and plots."""

import argparse
import math
from pathlib import Path

import numpy as np

from bench import plots, report
from bench.clients import ADD_HTTP
from bench.endtoend import ClientPool, Scenario, plan
from bench.inprocess import BatchResult, load_models, paired_runs
from bench.progress import Progress
from service.process import ServerError, ServerProcess
from bench.stats import ms
from bench.targets import BATCHING, NO_BATCHING, evaluate
from contract import MODEL_FILE, model_dir

SERVER_FAILED = "server did not start"


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    repository = Path(args.repository)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    have_files = all((model_dir(repository, m) / MODEL_FILE).is_file() for m in models)
    if not have_files:
        if not args.target:
            print(f"error: {repository} lacks {' or '.join(models)}: run `make export` or pass --repository")
            return 2
        print(f"note: {repository} lacks {' or '.join(models)}: the in-process part is skipped")
    servers = [("target", 0)] if args.target else [(BATCHING, args.max_batch_size), (NO_BATCHING, 1)]
    plans = {} if args.skip_e2e else {
        name: plan(name, models, args.concurrency, args.batch_rows, with_add_batch=i == 0,
                   with_http=i == 0 and not args.skip_http)
        for i, (name, _) in enumerate(servers)}
    batch_sizes = [] if args.skip_inprocess or not have_files else args.batch_sizes
    progress = Progress(len(batch_sizes) + sum(map(len, plans.values())),
                        math.inf if args.counts_only else args.time_limit)
    info = report.machine()

    inprocess = _inprocess(args, repository, models, batch_sizes, progress)
    scenarios = _end_to_end(args, repository, servers, plans, progress, out)

    checks = evaluate(inprocess, scenarios)
    summary = report.text(inprocess, scenarios, checks, args.intra_op_threads, info)
    print(summary)
    (out / "summary.txt").write_text(summary + "\n")
    settings = {k: v for k, v in vars(args).items() if k != "func"}
    report.write_json(out / "bench.json", settings, info, report.model_info(repository, models), inprocess,
                      scenarios, checks)
    written = plots.write_all(out, inprocess, scenarios)
    print(f"\nwrote {out / 'bench.json'}, {out / 'summary.txt'}" + "".join(f", {p}" for p in written))
    return 1 if any(s.skipped == SERVER_FAILED for s in scenarios) else 0


def _step_seconds(args) -> float:
    return math.inf if args.counts_only else args.step_seconds


def _inprocess(args, repository: Path, models: list[str], batch_sizes: list[int],
               progress: Progress) -> list[BatchResult]:
    if not batch_sizes:
        return []
    sessions = load_models(repository, models, args.intra_op_threads)
    rng = np.random.default_rng(args.seed)
    results = []
    for batch in batch_sizes:
        if not progress.begin(f"in-process ORT, batch {batch}: {' vs '.join(models)}"):
            continue
        result = paired_runs(sessions, batch, args.pairs, args.warmup, min(_step_seconds(args), progress.remaining()),
                             rng)
        results.append(result)
        medians = ", ".join(f"{m} {ms(np.median(t))} ms" for m, t in result.seconds.items())
        ratio = f", dense/sparse {np.median(result.ratios()):.2f}x" if len(result.seconds) == 2 else ""
        progress.note(f"{result.pairs} pairs: {medians}{ratio}")
    return results


def _end_to_end(args, repository: Path, servers: list[tuple[str, int]], plans: dict[str, list[Scenario]],
                progress: Progress, out: Path) -> list[Scenario]:
    if not plans:
        return []
    scenarios: list[Scenario] = []
    pool = ClientPool(min(args.client_processes, max(args.concurrency)))
    try:
        for name, max_batch in servers:
            todo = plans[name]
            scenarios += todo
            if progress.remaining() <= 0:
                for scenario in todo:
                    progress.begin(scenario.label)
                    scenario.skipped = "time limit"
                continue
            if args.target:
                _measure(args, todo, args.target, None, pool, progress, args.http_target)
                continue
            try:
                with ServerProcess(repository, out / f"server-{name}.log", max_batch, args.intra_op_threads) as server:
                    progress.note(f"server {name} (max batch {max_batch}) ready on {server.target}")
                    _measure(args, todo, server.target, server, pool, progress, server.http_target)
            except ServerError as error:
                progress.note(f"server {name} did not start: {error}")
                for scenario in todo:
                    scenario.skipped = scenario.skipped or SERVER_FAILED
    finally:
        pool.close()
    return scenarios


def _measure(args, todo: list[Scenario], target: str, server: ServerProcess | None, pool: ClientPool,
             progress: Progress, http_target: str = "") -> None:
    for scenario in todo:
        if not progress.begin(scenario.label):
            scenario.skipped = "time limit"
            continue
        if scenario.method == ADD_HTTP and not http_target:
            scenario.skipped = "no HTTP port (--http-target)"
            progress.note(scenario.skipped)
            continue
        before = server.batch_sizes() if server else {}
        calls = args.batch_calls if scenario.rows > 1 else args.calls
        pool.run(scenario, target, calls, min(_step_seconds(args), max(0.5, progress.remaining())),
                 args.client_warmup, args.timeout, http_target)
        after = server.batch_sizes() if server else {}
        if scenario.model in after:
            # Includes the warm-up calls' runs; over a whole scenario they barely move the mean.
            rows = after[scenario.model][0] - before.get(scenario.model, (0.0, 0.0))[0]
            runs = after[scenario.model][1] - before.get(scenario.model, (0.0, 0.0))[1]
            scenario.mean_batch = rows / runs if runs else None
        throughput = scenario.throughput or 0.0
        extra = f", {scenario.errors} errors ({scenario.first_error})" if scenario.errors else ""
        progress.note(f"{len(scenario.latencies)} calls in {scenario.seconds:.1f} s: p50 "
                      f"{ms(np.median(scenario.latencies)) if scenario.latencies else '-'} ms, "
                      f"{throughput * scenario.rows:,.0f} {'sums' if scenario.rows > 1 else 'req'}/s{extra}")
