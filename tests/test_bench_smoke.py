"""`python -m bench` with tiny counts writes the table, JSON and plots for both builds (no time is asserted).

It runs by count (--counts-only): every step runs its full counts however slow the machine, so every
scenario is there to check, with exactly the calls asked for."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from contract import DENSE_MODEL, SPARSE_MODEL
from fixtures.fakes import HANG_S
from service import cli

ROOT = Path(__file__).resolve().parents[1]
PAIRS, CALLS, BATCH_CALLS = 3, 8, 2
TINY = ["--batch-sizes", "1,16", "--pairs", str(PAIRS), "--warmup", "1", "--concurrency", "1,2", "--calls", str(CALLS),
        "--batch-rows", "16", "--batch-calls", str(BATCH_CALLS), "--client-processes", "2", "--client-warmup", "1",
        "--counts-only", "--timeout", str(HANG_S)]


@pytest.fixture(scope="module")
def bench_run(measured_repository, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_results")
    result = subprocess.run([sys.executable, "-m", "bench", "--repository", str(measured_repository), "--out", str(out),
                             *TINY],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)  # a hang bound
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


def test_json_holds_both_builds_in_process_and_end_to_end(bench_run):
    out, _ = bench_run
    data = json.loads((out / "bench.json").read_text())
    assert [r["batch"] for r in data["inprocess"]] == [1, 16]
    for batch in data["inprocess"]:
        assert set(batch["models"]) == {DENSE_MODEL, SPARSE_MODEL}
        assert batch["pairs"] == PAIRS and batch["dense_over_sparse"]["median"] > 0
        assert all(m["wrong_answers"] == 0 for m in batch["models"].values())
    rows = {(s["server"], s["method"], s["model"], s["concurrency"]): s for s in data["end_to_end"]}
    for server in ("batching", "no-batching"):
        for concurrency in (1, 2):
            for model in ("floor", DENSE_MODEL, SPARSE_MODEL):
                row = rows[(server, "Check" if model == "floor" else "Add", model, concurrency)]
                assert (row["calls"], row["errors"], row["wrong_answers"]) == (CALLS, 0, 0), row
                assert row["latency"]["p50"] and row["calls_per_second"]  # something was measured
    for concurrency in (1, 2):  # Add over HTTP/REST on the batching server, beside gRPC
        for model in (DENSE_MODEL, SPARSE_MODEL):
            row = rows[("batching", "Add-HTTP", model, concurrency)]
            assert (row["calls"], row["errors"], row["wrong_answers"]) == (CALLS, 0, 0), row
            assert ("no-batching", "Add-HTTP", model, concurrency) not in rows
    for model in (DENSE_MODEL, SPARSE_MODEL):
        row = rows[("batching", "AddBatch", model, 1)]
        assert (row["rows_per_call"], row["calls"], row["errors"], row["wrong_answers"]) == (16, BATCH_CALLS, 0, 0)
    status = {t["name"]: t["status"] for t in data["targets"]}
    assert len(status) == 6 and set(status.values()) <= {"PASS", "MISS", "n/a"}
    # Measured here: batch 1 and the sequential Add; batch 1024 and 16 clients were not asked for.
    assert status["ORT speed-up sparse vs dense, batch 1"] in ("PASS", "MISS")
    assert status["ORT speed-up sparse vs dense, batch 1024"] == "n/a"
    assert data["machine"]["usable_cpus"] >= 1


def test_table_is_printed_and_saved(bench_run):
    out, result = bench_run
    table = (out / "summary.txt").read_text()
    assert table.strip() in result.stdout
    for text in ("In-process ONNX Runtime", "server: batching", "server: no-batching", DENSE_MODEL, SPARSE_MODEL,
                 "Targets", "AddBatch", "Add-HTTP", "gRPC vs HTTP/REST"):
        assert text in table
    assert "[  1/" in result.stderr  # the progress display


def test_plots_are_pngs(bench_run):
    out, _ = bench_run
    for name in ("inprocess_latency.png", "e2e_latency.png", "throughput.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_bench_is_a_sparse_adder_subcommand():
    assert "bench.cli:register" in cli.plugin_commands()  # registered by pyproject's entry point
    args = cli.build_parser().parse_args(["bench", "--concurrency", "1,16", "--out", "x"])
    assert args.concurrency == [1, 16] and args.batch_sizes == [1, 16, 256, 1024] and callable(args.func)


def test_bench_imports_no_torch_or_export():
    code = ("import sys, bench.run, bench.cli, bench.clients\n"
            "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'export', 'onnx'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True, text=True)
    assert result.stdout.strip() == ""
