"""The committed model repository is what the committed code makes, proven on all 10,000 problems.

Training is not repeated (that is `make export`, ~15 minutes, and its float results depend on the CPU
model). Everything after it is: both graphs are recompiled from the committed checkpoints with
today's compiler and must answer as the committed graphs do (sum, digits, edges); the circuit is
re-extracted from the checkpoint and, with the committed ablation table, must equal circuit.json;
the explain graph must reproduce that table; every sha256 and the export fingerprint must match.
"""

import hashlib
import json
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from contract import (ABLATION_FILE, CHECKPOINT_FILE, CIRCUIT_FILE, DENSE_MODEL, EXPLAIN_FILE, INPUT_A, INPUT_B,
                      INPUT_EDGE_MASK, MANIFEST_FILE, MODELS, SPARSE_MODEL, model_dir)
from contract.circuit import read_circuit
from export.ablation import AblationTable, ablation_circuit, onnx_run
from export.circuit import extract_circuit
from export.compile import compile_model
from export.model import load_checkpoint
from export.task import N_POSITIONS, PREDICT_FROM, make_domain
from export.verify import session
from export_support import REAL_REPOSITORY

CHECKOUT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(not (REAL_REPOSITORY / SPARSE_MODEL).is_dir(),
                                reason=f"no model repository at {REAL_REPOSITORY}")


def manifest(name: str) -> dict:
    return json.loads((model_dir(REAL_REPOSITORY, name) / MANIFEST_FILE).read_text())


@lru_cache(maxsize=None)
def rebuilt(name: str):
    """(checkpoint model, re-extracted circuit, recompiled graph bytes) of one committed build."""
    folder, config = model_dir(REAL_REPOSITORY, name), manifest(name)
    torch.set_num_threads(config["config"]["threads"])
    model = load_checkpoint(folder / CHECKPOINT_FILE)
    domain = make_domain(config["seed"], config["config"]["test_fraction"])
    gated = name == SPARSE_MODEL
    circuit = extract_circuit(model, name, domain.a, domain.b, gated, range(PREDICT_FROM, N_POSITIONS))
    graph = compile_model(model, circuit, gated, config["opset"], doc=f"sparse-adder {name}")
    return model, circuit, graph.proto.SerializeToString()


def all_problems() -> dict:
    return {INPUT_A: np.repeat(np.arange(100, dtype=np.int64), 100),
            INPUT_B: np.tile(np.arange(100, dtype=np.int64), 100)}


def test_the_repository_was_built_by_this_checkouts_export_code_and_config():
    proc = subprocess.run([sys.executable, "-m", "export.fingerprint", "--repository", str(REAL_REPOSITORY)],
                          cwd=CHECKOUT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", MODELS)
def test_every_graph_a_manifest_names_has_its_sha256(name):
    folder, config = model_dir(REAL_REPOSITORY, name), manifest(name)
    named = [(config["file"], config["sha256"])]
    if config.get("explain"):  # the sparse build only
        named.append((config["explain"]["file"], config["explain"]["sha256"]))
    for file, sha256 in named:
        assert hashlib.sha256((folder / file).read_bytes()).hexdigest() == sha256, file


@pytest.mark.parametrize("name", MODELS)
def test_the_graph_recompiled_from_the_checkpoint_answers_as_the_committed_one(name):
    committed = session((model_dir(REAL_REPOSITORY, name) / manifest(name)["file"]).read_bytes())
    recompiled = session(rebuilt(name)[2])
    expected, got = committed.run(None, all_problems()), recompiled.run(None, all_problems())
    assert [o.name for o in committed.get_outputs()] == [o.name for o in recompiled.get_outputs()]
    for output, want, have in zip(committed.get_outputs(), expected, got):
        np.testing.assert_array_equal(have, want, err_msg=output.name)


def test_the_dense_circuit_re_extracted_from_the_checkpoint_is_circuit_json():
    committed = read_circuit(model_dir(REAL_REPOSITORY, DENSE_MODEL) / CIRCUIT_FILE)
    assert rebuilt(DENSE_MODEL)[1] == committed


def test_the_sparse_circuit_re_extracted_with_the_committed_ablation_table_is_circuit_json():
    folder = model_dir(REAL_REPOSITORY, SPARSE_MODEL)
    table = AblationTable.load(folder / ABLATION_FILE)
    committed = read_circuit(folder / CIRCUIT_FILE)
    assert ablation_circuit(rebuilt(SPARSE_MODEL)[1], table, int(table.active.sum())) == committed


def explain_graph(which: str) -> bytes:
    """explain.onnx as committed, or recompiled from the checkpoint (maskable) with today's compiler."""
    if which == "committed":
        return (model_dir(REAL_REPOSITORY, SPARSE_MODEL) / EXPLAIN_FILE).read_bytes()
    model, circuit, _ = rebuilt(SPARSE_MODEL)
    return compile_model(model, circuit, True, manifest(SPARSE_MODEL)["opset"], maskable=True).proto.SerializeToString()


@pytest.mark.parametrize("which", ["committed", "recompiled"])
def test_the_explain_graph_reproduces_the_ablation_table(which):
    """Every (problem, active edge) row of the table: the sum with that edge alone closed."""
    table = AblationTable.load(model_dir(REAL_REPOSITORY, SPARSE_MODEL) / ABLATION_FILE)
    explain = session(explain_graph(which), threads=2)
    assert INPUT_EDGE_MASK in [i.name for i in explain.get_inputs()]
    answer, active = onnx_run(explain, table.a, table.b, np.ones_like(table.active))
    np.testing.assert_array_equal(answer, table.answer)
    np.testing.assert_array_equal(active, table.active)
    problem, edge = np.nonzero(table.active)
    closed = np.ones((len(problem), table.active.shape[1]), bool)
    closed[np.arange(len(problem)), edge] = False
    np.testing.assert_array_equal(onnx_run(explain, table.a[problem], table.b[problem], closed)[0],
                                  table.without[problem, edge])
    np.testing.assert_array_equal(onnx_run(explain, table.a, table.b, table.necessary)[0], table.necessary_only)
