"""The terminal tables, the machine description and the JSON file."""

import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path

import numpy as np

from bench.clients import ADD, ADD_BATCH, ADD_HTTP
from bench.endtoend import Scenario
from bench.inprocess import BatchResult
from bench.stats import ms, rate, us
from bench.targets import Check
from contract import DENSE_MODEL, MANIFEST_FILE, SPARSE_MODEL, model_dir
from contract.manifest import read_manifest
from contract.schema import ContractError


def machine() -> dict:
    """What the figures were measured on; the load average says whether something else was running."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("onnxruntime", "grpcio", "numpy", "protobuf"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(),
            "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "python": platform.python_version(), "versions": versions,
            "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def model_info(repository: Path, names: list[str]) -> dict:
    """Size figures from each manifest (what makes the sparse build sparse), or {} if unreadable."""
    info = {}
    for name in names:
        try:
            manifest = read_manifest(model_dir(repository, name) / MANIFEST_FILE)
        except ContractError:
            continue
        info[name] = {"sha256": manifest.sha256, "onnx_nodes": manifest.onnx_nodes,
                      "parameters": vars(manifest.parameters),
                      "edges_per_problem_mean": manifest.edges.per_problem_mean}
    return info


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(header), line(["-" * w for w in widths]), *map(line, rows)]


def inprocess_table(results: list[BatchResult], threads: int) -> list[str]:
    rows = []
    for r in results:
        data = r.to_json()
        ratio = data.get("dense_over_sparse", {})
        for name, m in data["models"].items():
            call, problem = m["per_call"], m["per_problem"]
            rows.append([str(r.batch), name, ms(call.get("median")), f"{ms(call.get('q1'))}-{ms(call.get('q3'))}",
                         us(problem.get("median")), str(r.pairs), str(m["wrong_answers"]),
                         f"{ratio['median']:.2f}x" if ratio and name == SPARSE_MODEL else ""])
    return [f"In-process ONNX Runtime, {threads} intra-op thread(s), paired alternating runs (median, IQR)",
            *_table(["batch", "model", "ms/call", "IQR ms", "us/problem", "pairs", "wrong", "dense/sparse"], rows)]


def endtoend_table(scenarios: list[Scenario]) -> list[str]:
    lines = []
    for server in dict.fromkeys(s.server for s in scenarios):
        rows = []
        for s in (s for s in scenarios if s.server == server):
            d = s.to_json()
            lat = d["latency"]
            per_s = d["rows_per_second"] if s.method == ADD_BATCH else d["calls_per_second"]
            rows.append([s.method, d["model"], str(s.concurrency), str(d["calls"]), ms(lat.get("p50")),
                         ms(lat.get("p95")), ms(lat.get("p99")), rate(per_s) + (" sums/s" if s.method == ADD_BATCH else ""),
                         "-" if s.mean_batch is None else f"{s.mean_batch:.1f}",
                         str(s.errors + s.wrong) if not s.skipped else "skipped"])
        over = "gRPC, Add-HTTP rows over HTTP/REST" if any(s.method == ADD_HTTP for s in scenarios) else "gRPC"
        lines += ["", f"End to end over {over}, server: {server}",
                  *_table(["rpc", "model", "clients", "calls", "p50 ms", "p95 ms", "p99 ms", "per second",
                           "server batch", "errors"], rows)]
    return lines


def protocol_table(scenarios: list[Scenario]) -> list[str]:
    """Add over gRPC beside Add over HTTP/REST, same server, model and clients: the figures to choose by."""
    grpc = {(s.server, s.model, s.concurrency): s for s in scenarios if s.method == ADD and s.latencies}
    rows = []
    for s in scenarios:
        other = grpc.get((s.server, s.model, s.concurrency))
        if s.method != ADD_HTTP or not s.latencies or other is None:
            continue
        p50 = [ms(float(np.median(x.latencies))) for x in (other, s)]
        rows.append([s.server, s.model, str(s.concurrency), *p50, rate(other.throughput), rate(s.throughput),
                     f"{s.throughput / other.throughput:.2f}x"])
    if not rows:
        return []
    return ["", "Add: gRPC vs HTTP/REST on the same server (p50 latency, requests per second)",
            *_table(["server", "model", "clients", "gRPC p50 ms", "HTTP p50 ms", "gRPC req/s", "HTTP req/s",
                     "HTTP/gRPC"], rows)]


def targets_table(checks: list[Check]) -> list[str]:
    rows = []
    for c in checks:
        value = "-" if c.measured is None else f"{c.measured:,.0f}" if c.unit == "sums/s" else f"{c.measured:.2f}x"
        goal = f"{'<=' if c.at_most else '>='} " + (f"{c.goal:,.0f}" if c.unit == "sums/s" else f"{c.goal:g}x")
        share = "" if c.of_goal is None else f"{c.of_goal:.0%} of goal"
        rows.append([c.name, value, goal, c.status, share, c.detail])
    return ["", "Targets", *_table(["target", "measured", "goal", "", "", "how"], rows)]


def text(inprocess: list[BatchResult], scenarios: list[Scenario], checks: list[Check], threads: int,
         info: dict) -> str:
    head = [f"sparse-adder bench on {info['cpu']} ({info['usable_cpus']} CPUs usable, "
            f"load {load_text(info)} at start)"]
    body = inprocess_table(inprocess, threads) if inprocess else ["In-process: not measured"]
    end_to_end = endtoend_table(scenarios) + protocol_table(scenarios) if scenarios else []
    return "\n".join(head + [""] + body + end_to_end + targets_table(checks))


def write_json(path: Path, settings: dict, info: dict, models: dict, inprocess: list[BatchResult],
               scenarios: list[Scenario], checks: list[Check]) -> None:
    data = {"machine": info, "settings": settings, "models": models,
            "inprocess": [r.to_json() for r in inprocess],
            "end_to_end": [s.to_json() for s in scenarios],
            "targets": [c.to_json() for c in checks],
            "units": "seconds unless named otherwise; ratios dense/sparse are > 1 when sparse is faster",
            "builds": [DENSE_MODEL, SPARSE_MODEL]}
    path.write_text(json.dumps(data, indent=1, default=float) + "\n")


def load_text(info: dict) -> str:
    """The load average `machine()` saw at the start, as "1.21, 1.83, 3.08" (empty where unknown)."""
    return ", ".join(f"{x:.2f}" for x in info["load_average_at_start"] or ())


def write_rounds(path: Path, info: dict, args, rounds: list) -> None:
    """An interleaved bench's JSON: the machine, its settings and every round's figures."""
    path.write_text(json.dumps({"machine": info, "settings": vars(args), "rounds": rounds}, indent=2) + "\n")
