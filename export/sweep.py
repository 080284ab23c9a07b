"""`python -m export.sweep`: the export once per seed, one row each (DIR/sweep.json, DIR/sweep.md).

Each seed runs `python -m export --seed K --repository DIR/seed-K` as its own process (log in
DIR/seed-K.log), up to --jobs at once. A seed fails the sweep (exit 1, named in the summary) when its
export fails (the row keeps the log's last line: a SparsificationError names the best figure it
reached) or, unless --tiny, when it is not exact on all 10,000 problems or is denser than --max-density.
The other seeds still run to the end.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import onnx

from contract import (CIRCUIT_FILE, DENSE_MODEL, INPUT_A, INPUT_B, MANIFEST_FILE, MODEL_FILE, SPARSE_MODEL,
                      model_dir)
from contract.circuit import read_circuit
from contract.manifest import read_manifest
from export.verify import session

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # holds export/ and contract/: each export's PYTHONPATH
SWEEP_JSON, SWEEP_MARKDOWN = "sweep.json", "sweep.md"
MAX_DENSITY = 0.012  # issue #20: every seed at or under 1.2% of edges (the aim is 1.0%)
POLL_SECONDS = 0.2  # how often the sweep looks for a finished export
SPEEDUP_PAIRS = {1: 1000, 1024: 50}  # batch size -> alternating (dense, sparse) pairs timed
WARMUP_CALLS = 10  # per build and batch size, untimed
SEED_RANGE = re.compile(r"(\d+)-(\d+)")


@dataclass(frozen=True)
class SeedRun:
    """One finished export process."""
    seed: int
    repository: Path
    log: Path
    returncode: int
    minutes: float  # wall clock, process start to exit


@dataclass
class Running:
    process: subprocess.Popen
    log: IO
    started: float


# ---- seeds and processes ------------------------------------------------------------------------

def parse_seeds(text: str) -> list[int]:
    """`0-4`, `0,2,5`, `3` (or a mix, `0-2,7`) -> the seeds in the order given; no repeats."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        if match := SEED_RANGE.fullmatch(part):
            first, last = int(match[1]), int(match[2])
            if last < first:
                raise argparse.ArgumentTypeError(f"empty seed range {part!r}")
            seeds += range(first, last + 1)
        elif part.isdigit():
            seeds.append(int(part))
        else:
            raise argparse.ArgumentTypeError(f"not a seed or a range of seeds: {part!r} (e.g. 0-4, 0,2,5 or 3)")
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"a seed repeats in {text!r}")
    return seeds


def export_command(seed: int, repository: Path, tiny: bool, config: Path | None) -> list[str]:
    """The export as a user runs it, with this seed (ExportConfig.seed stays the one place a seed lives).

    Absolute paths: the export runs in PROJECT_ROOT (so `-m export` is this checkout's), not here.
    """
    command = [sys.executable, "-m", "export", "--seed", str(seed), "--repository", str(repository.resolve()),
               "--quiet"]
    if tiny:
        command.append("--tiny")
    if config is not None:
        command += ["--config", str(config.resolve())]
    return command


def start_export(command: list[str], log_path: Path) -> Running:
    """Start one export with its stdout and stderr in `log_path` (the command is the log's first line)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1",  # the log fills as it goes, in order
               PYTHONPATH=os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])))
    log = log_path.open("w")
    log.write(" ".join(command) + "\n")
    log.flush()
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT)
    return Running(process, log, time.monotonic())


def run_exports(seeds: list[int], out: Path, jobs: int, tiny: bool, config: Path | None) -> Iterator[SeedRun]:
    """Run the seeds' exports, up to `jobs` at once, yielding each as it finishes.

    Lazy: a new export starts only when the caller asks for the next one, so with jobs=1 no export
    of the sweep runs while the caller times the one that finished.
    """
    pending, running = list(seeds), {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                seed = pending.pop(0)
                running[seed] = start_export(export_command(seed, out / f"seed-{seed}", tiny, config),
                                             out / f"seed-{seed}.log")
            seed = next((s for s, r in running.items() if r.process.poll() is not None), None)
            if seed is None:
                time.sleep(POLL_SECONDS)
                continue
            done = running.pop(seed)
            done.log.close()
            yield SeedRun(seed, out / f"seed-{seed}", out / f"seed-{seed}.log", done.process.returncode,
                          (time.monotonic() - done.started) / 60)
    finally:  # the sweep itself failed or was interrupted: leave no export running behind it
        for r in running.values():
            r.process.kill()
            r.process.wait()
            r.log.close()


# ---- one seed's row -----------------------------------------------------------------------------

def last_line(log: Path) -> str:
    """The log's last non-empty line: the export's one-line failure, or a traceback's exception."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "(empty log)"


def onnx_nodes(path: Path) -> int:
    return len(onnx.load(path).graph.node)


def build_figures(repository: Path) -> dict:
    """The figures of a completed export, from its manifests, sparse circuit.json and ONNX files."""
    dense = read_manifest(model_dir(repository, DENSE_MODEL) / MANIFEST_FILE)
    sparse = read_manifest(model_dir(repository, SPARSE_MODEL) / MANIFEST_FILE)
    circuit = read_circuit(model_dir(repository, SPARSE_MODEL) / CIRCUIT_FILE)
    return {
        "correct": {"dense": dense.accuracy.correct, "sparse": sparse.accuracy.correct},
        "problems": sparse.accuracy.total,
        "density": sparse.edges.density,
        "edges_per_problem": {"mean": sparse.edges.per_problem_mean, "min": sparse.edges.per_problem_min,
                              "max": sparse.edges.per_problem_max},
        "distinct_edges": sparse.edges.distinct,
        # heads no edge of the sparse circuit uses, of every head the model has
        "dead_heads": len(circuit.dead_heads), "heads": circuit.n_layers * circuit.n_heads,
        "neurons": {"kept": sparse.neurons.kept, "total": sparse.neurons.total},
        # from the export's single-edge ablation table (export/ablation.py writes it into circuit.json)
        "necessary_edges_per_problem": circuit.necessary_per_problem.mean,
        "onnx_nodes": {name: onnx_nodes(model_dir(repository, name) / MODEL_FILE)
                       for name in (DENSE_MODEL, SPARSE_MODEL)},
    }


def completed(row: dict) -> bool:
    """The export wrote its repository (a failed one writes nothing)."""
    return row["exit_code"] == 0


def seed_row(run: SeedRun) -> dict:
    """A finished export's row: its figures, or status "failed" with the log's last line."""
    row = {"seed": run.seed, "repository": str(run.repository), "log": str(run.log),
           "exit_code": run.returncode, "minutes": round(run.minutes, 2)}
    if run.returncode != 0:
        return row | {"status": "failed", "error": last_line(run.log)}
    return row | {"status": "ok"} | build_figures(run.repository)


def judge(row: dict, max_density: float) -> dict:
    """A completed export fails the sweep unless both builds are exact on every problem and the
    sparse one is at or under `max_density`."""
    if row["status"] != "ok":
        return row
    misses = [f"{name} exact on {correct:,} of {row['problems']:,}"
              for name, correct in row["correct"].items() if correct != row["problems"]]
    if row["density"] > max_density:
        misses.append(f"edge density {row['density']:.4%} over {max_density:.2%}")
    return row | {"status": "failed", "error": "; ".join(misses)} if misses else row


# ---- ORT speed-up -------------------------------------------------------------------------------

def timed_run(sess, feed: dict) -> float:
    start = time.perf_counter()
    sess.run(None, feed)
    return time.perf_counter() - start


def alternating_speedup(dense: bytes, sparse: bytes, batch: int, pairs: int) -> float:
    """Median over `pairs` of dense / sparse seconds per call, calls alternating (dense, sparse,
    dense, ...) in this one process, one intra-op thread each: a drift in load hits both alike."""
    sessions = (session(dense, threads=1), session(sparse, threads=1))
    n = np.arange(batch, dtype=np.int64)
    feed = {INPUT_A: n % 100, INPUT_B: n % 97}  # the problems the export's own latency check uses
    for _ in range(WARMUP_CALLS):
        for sess in sessions:
            sess.run(None, feed)
    ratios = [timed_run(sessions[0], feed) / timed_run(sessions[1], feed) for _ in range(pairs)]
    return float(np.median(ratios))


def ort_speedups(repository: Path) -> dict:
    """{"b1": x, "b1024": y}: how many times faster the sparse build's model.onnx runs than the dense one's."""
    dense, sparse = ((model_dir(repository, name) / MODEL_FILE).read_bytes() for name in (DENSE_MODEL, SPARSE_MODEL))
    return {f"b{batch}": round(alternating_speedup(dense, sparse, batch, pairs), 3)
            for batch, pairs in SPEEDUP_PAIRS.items()}


# ---- the machine, the outputs -------------------------------------------------------------------

def cpu_model() -> str:
    """/proc/cpuinfo's "model name" (the figures depend on it), or "unknown CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def git(*args: str) -> str:
    """A git command's output in the checkout that runs the sweep ("" without git or a repository)."""
    try:
        return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def git_commit() -> dict:
    """HEAD, and whether tracked files differed from it (then the figures are of uncommitted code)."""
    return {"commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


MARKDOWN_COLUMNS = ["seed", "exact (dense / sparse)", "edge density", "edges per problem (mean / min / max)",
                    "distinct edges", "dead heads", "MLP neurons kept", "necessary edges per problem",
                    "ONNX nodes (dense / sparse)", "ORT speed-up b1 / b1024", "minutes"]


def markdown_cells(row: dict) -> list[str]:
    """One table row; a failed seed shows its error where its figures would be."""
    minutes = f"{row['minutes']:.1f}"
    if not completed(row):
        return [str(row["seed"]), f"**failed**: {row['error']}"] + ["—"] * (len(MARKDOWN_COLUMNS) - 3) + [minutes]
    kept, total = row["neurons"]["kept"], row["neurons"]["total"]
    speedup = row.get("speedup")
    exact = f"{row['correct']['dense']:,} / {row['correct']['sparse']:,} of {row['problems']:,}"
    if row["status"] == "failed":
        exact = f"**failed**: {row['error']}; {exact}"
    return [str(row["seed"]), exact, f"{row['density']:.2%}",
            "{mean:.2f} / {min} / {max}".format(**row["edges_per_problem"]), str(row["distinct_edges"]),
            f"{row['dead_heads']} of {row['heads']}",
            f"{'/'.join(map(str, kept))} ({sum(kept) / sum(total):.1%})",
            f"{row['necessary_edges_per_problem']:.2f}",
            f"{row['onnx_nodes'][DENSE_MODEL]} / {row['onnx_nodes'][SPARSE_MODEL]}",
            f"{speedup['b1']:.2f}x / {speedup['b1024']:.2f}x" if speedup else "—", minutes]


def markdown(sweep: dict) -> str:
    """sweep.md: a line saying where and how it ran, then the table, ready for the README."""
    commit = sweep["commit"][:12] + (" with uncommitted changes" if sweep["dirty"] else "")
    head = (f"Seed sweep on {sweep['cpu']}, {sweep['date']}, commit {commit}: `{sweep['command']}` "
            f"({sweep['jobs']} export(s) at once; ORT speed-up: median dense / sparse time of alternating "
            f"calls, one intra-op thread, measured while no export of the sweep ran).")
    lines = [head, "", "| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    # a "|" inside a cell (an error message) would end it
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in markdown_cells(row)) + " |"
              for row in sweep["rows"]]
    return "\n".join(lines) + "\n"


def failure_summary(rows: list[dict]) -> str | None:
    """Names every failed seed (first line) and why (a line each), or None when all passed."""
    failed = [row for row in rows if row["status"] != "ok"]
    if not failed:
        return None
    return "\n".join([f"sweep failed on {len(failed)} of {len(rows)} seeds: {', '.join(str(r['seed']) for r in failed)}"]
                     + [f"  seed {r['seed']}: {r['error']} (log {r['log']})" for r in failed])


# ---- the command --------------------------------------------------------------------------------

def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m export.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=parse_seeds, required=True, help="0-4, 0,2,5 or 3")
    parser.add_argument("--jobs", type=int, default=1, help="exports at once, each its own process [1]")
    parser.add_argument("--out", type=Path, required=True, help="DIR: seed-K/, seed-K.log, sweep.json, sweep.md")
    parser.add_argument("--max-density", type=float, default=MAX_DENSITY,
                        help=f"a seed denser than this fails the sweep [{MAX_DENSITY}]")
    parser.add_argument("--tiny", action="store_true", help="tiny exports (tests): only completion is checked")
    parser.add_argument("--config", type=Path,
                        help="JSON overrides for every seed's export, as python -m export --config takes them")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    return args


def sweep_rows(args: argparse.Namespace) -> list[dict]:
    """Every seed's row, in the order given; each printed as its export finishes."""
    print(f"seeds {', '.join(map(str, args.seeds))}, {args.jobs} at once; logs in {args.out}/seed-K.log", flush=True)
    rows = {}
    for run in run_exports(args.seeds, args.out, args.jobs, args.tiny, args.config):
        row = seed_row(run) if args.tiny else judge(seed_row(run), args.max_density)
        if args.jobs == 1 and completed(row):  # nothing else running now: time it at once
            row["speedup"] = ort_speedups(run.repository)
        rows[run.seed] = row
        print(f"seed {run.seed}: {row['status']}{': ' + row['error'] if 'error' in row else ''} "
              f"({run.minutes:.1f} min)", flush=True)
    if args.jobs > 1:  # timed only once every export has finished: they would share the cores
        for row in rows.values():
            if completed(row):
                row["speedup"] = ort_speedups(Path(row["repository"]))
    return [rows[seed] for seed in args.seeds]


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sweep = {"cpu": cpu_model(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             **git_commit(), "command": "python -m export.sweep " + " ".join(argv or sys.argv[1:]),
             "jobs": args.jobs, "tiny": args.tiny, "max_density": None if args.tiny else args.max_density,
             "config": str(args.config) if args.config else None}
    sweep["rows"] = sweep_rows(args)
    (args.out / SWEEP_JSON).write_text(json.dumps(sweep, indent=1) + "\n")
    (args.out / SWEEP_MARKDOWN).write_text(markdown(sweep))
    print(f"rows in {args.out / SWEEP_JSON} and {args.out / SWEEP_MARKDOWN}")
    problem = failure_summary(sweep["rows"])
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
