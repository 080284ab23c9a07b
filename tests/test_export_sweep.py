"""`python -m export.sweep`: real tiny exports per seed, their rows, and a loud failure."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from contract import DENSE_MODEL, MANIFEST_FILE, SPARSE_MODEL, model_dir
from contract.manifest import read_manifest
from export.sweep import MARKDOWN_COLUMNS, SWEEP_JSON, SWEEP_MARKDOWN, failure_summary, judge, parse_seeds

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def run_sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export.sweep", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=1200)


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of the Markdown table's rows (header and separator included), split at unescaped "|"."""
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])] for line in markdown.splitlines()
            if line.startswith("|")]


# ---- the seed parser and the verdict, as units ------------------------------------------------------

@pytest.mark.parametrize("text, seeds", [("0-4", [0, 1, 2, 3, 4]), ("0,2,5", [0, 2, 5]), ("3", [3]),
                                         ("0-2,7", [0, 1, 2, 7]), (" 4 , 1", [4, 1])])
def test_seed_lists_and_ranges_parse_in_the_order_given(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "4-2", "a", "1,1", "0-2,2", "-1", "1.5", "0-"])
def test_a_bad_seed_list_is_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_seeds(text)


def completed_row(seed: int = 3, correct: int = 10_000, density: float = 0.0105) -> dict:
    return {"seed": seed, "status": "ok", "log": f"seed-{seed}.log", "problems": 10_000,
            "correct": {"dense": 10_000, "sparse": correct}, "density": density}


def test_an_exact_seed_under_the_ceiling_passes():
    assert judge(completed_row(), 0.012)["status"] == "ok"


def test_a_completed_seed_that_is_not_exact_or_too_dense_fails_with_its_figures():
    inexact = judge(completed_row(correct=9_998), 0.012)
    assert inexact["status"] == "failed" and "sparse exact on 9,998 of 10,000" in inexact["error"]
    dense = judge(completed_row(density=0.01312), 0.012)
    assert dense["status"] == "failed" and "1.3120% over 1.20%" in dense["error"]
    summary = failure_summary([completed_row(seed=2), inexact])
    assert summary.splitlines()[0] == "sweep failed on 1 of 2 seeds: 3" and "9,998" in summary


# ---- real tiny exports ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def passing_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "out"
    proc = run_sweep("--seeds", "0-1", "--jobs", "2", "--tiny", "--out", str(out))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def test_each_seed_gets_its_repository_log_and_row(passing_sweep):
    out, proc = passing_sweep
    sweep = json.loads((out / SWEEP_JSON).read_text())
    assert [row["seed"] for row in sweep["rows"]] == [0, 1]
    assert sweep["cpu"] and sweep["date"] and sweep["commit"] and sweep["jobs"] == 2
    for row in sweep["rows"]:
        seed = row["seed"]
        assert row["status"] == "ok" and f"seed {seed}: ok" in proc.stdout
        assert (out / f"seed-{seed}.log").read_text().startswith(sys.executable)
        sparse = read_manifest(model_dir(out / f"seed-{seed}", SPARSE_MODEL) / MANIFEST_FILE)
        assert sparse.seed == seed  # the seed reached the export's config
        assert row["correct"]["sparse"] == sparse.accuracy.correct and row["problems"] == 10_000
        assert row["density"] == sparse.edges.density and row["distinct_edges"] == sparse.edges.distinct
        assert row["neurons"]["kept"] == sparse.neurons.kept
        assert 0 <= row["dead_heads"] <= row["heads"] == 2 * 2  # the tiny model: 2 layers x 2 heads
        assert row["necessary_edges_per_problem"] <= row["edges_per_problem"]["mean"]
        for name in (DENSE_MODEL, SPARSE_MODEL):  # counted in model.onnx, as the manifest counted them
            manifest = read_manifest(model_dir(row["repository"], name) / MANIFEST_FILE)
            assert row["onnx_nodes"][name] == manifest.onnx_nodes
        assert set(row["speedup"]) == {"b1", "b1024"} and all(x > 0 for x in row["speedup"].values())
        assert row["minutes"] > 0


def test_the_markdown_table_has_a_row_per_seed_under_the_cpu_model(passing_sweep):
    out, _ = passing_sweep
    sweep = json.loads((out / SWEEP_JSON).read_text())
    markdown = (out / SWEEP_MARKDOWN).read_text()
    assert markdown.startswith(f"Seed sweep on {sweep['cpu']}, ")
    header, separator, *rows = table_rows(markdown)
    assert header == MARKDOWN_COLUMNS and separator == ["---"] * len(MARKDOWN_COLUMNS)
    assert [row[0] for row in rows] == ["0", "1"]
    assert all(len(row) == len(MARKDOWN_COLUMNS) and "failed" not in " ".join(row) for row in rows)


def test_failed_exports_fail_the_sweep_loudly_and_the_other_seeds_still_run(tmp_path):
    # a real failure of the export's own: tiny exports held to exactness, which they cannot reach
    config = tmp_path / "exact-tiny.json"
    config.write_text(json.dumps({"sparsify": {"require_exact": True, "max_steps": 10, "extra_rounds": 0}}))
    out = tmp_path / "out"
    proc = run_sweep("--seeds", "0,1", "--jobs", "1", "--tiny", "--config", str(config), "--out", str(out))
    assert proc.returncode == 1
    assert "sweep failed on 2 of 2 seeds: 0, 1\n" in proc.stderr
    rows = json.loads((out / SWEEP_JSON).read_text())["rows"]
    assert [row["seed"] for row in rows] == [0, 1]  # seed 1 ran after seed 0 had failed
    for row in rows:
        assert row["status"] == "failed" and row["exit_code"] == 1
        assert row["error"].startswith("export failed its target: no exact checkpoint in 10 steps")
        assert f"seed {row['seed']}: {row['error']}" in proc.stderr
        assert not (out / f"seed-{row['seed']}").exists()  # the export writes nothing when it fails
    cells = table_rows((out / SWEEP_MARKDOWN).read_text())[2:]
    assert all(row[1].startswith("**failed**: export failed its target") for row in cells)
