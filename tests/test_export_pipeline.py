"""The export as a user runs it: determinism, a clear failure, and the real default artifacts."""

import hashlib
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from contract import (ABLATION_FILE, CHECKPOINT_FILE, CIRCUIT_FILE, DENSE_MODEL, EXPLAIN_FILE, FIGURE_FILE, INPUT_A,
                      INPUT_B, MANIFEST_FILE, MODEL_FILE, OUTPUT_EDGES, SPARSE_MODEL, model_dir)
from contract.circuit import read_circuit
from contract.manifest import read_manifest
from export.circuit import extract_circuit
from export.config import ExportConfig, tiny_config
from export.fingerprint import export_fingerprint, is_stale, recorded_fingerprint
from export.model import load_checkpoint
from export.sparsify import sparsify
from export.task import make_domain
from export.train import train_base
from export.verify import session
from export_support import REAL_REPOSITORY


def test_same_config_and_seed_give_the_same_models_and_circuit():
    cfg = tiny_config()
    torch.set_num_threads(cfg.threads)
    domain = make_domain(cfg.seed, cfg.test_fraction)
    runs = []
    for _ in range(2):
        base = train_base(cfg, domain, progress=False)
        sparse = sparsify(cfg, domain, base.model, base.final_ce, progress=False)
        circuit = extract_circuit(sparse.model, SPARSE_MODEL, domain.a, domain.b, True, range(5, 10))
        runs.append((base.model.state_dict(), circuit.to_json()))
    (s1, c1), (s2, c2) = runs
    assert c1 == c2
    assert all(torch.equal(s1[k], s2[k]) for k in s1)


@pytest.fixture(scope="module")
def tiny_repository(tmp_path_factory):
    """`python -m export --tiny` end to end: seconds of training, every stage after it as in `make export`."""
    repo = tmp_path_factory.mktemp("tiny") / "repo"
    proc = subprocess.run([sys.executable, "-m", "export", "--tiny", "--quiet", "--repository", str(repo)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert f"model repository written to {repo}/" in proc.stdout
    return repo


def test_a_tiny_export_writes_both_builds_as_the_contract_reads_them(tiny_repository):
    for name in (DENSE_MODEL, SPARSE_MODEL):
        folder = model_dir(tiny_repository, name)
        manifest = read_manifest(folder / MANIFEST_FILE)
        assert manifest.model == name and manifest.config == tiny_config().to_dict()
        assert hashlib.sha256((folder / MODEL_FILE).read_bytes()).hexdigest() == manifest.sha256
        circuit = read_circuit(folder / CIRCUIT_FILE)
        outputs = session((folder / MODEL_FILE).read_bytes()).run(None, {INPUT_A: np.array([36]), INPUT_B: np.array([28])})
        assert outputs[1].shape == (1, 5)
        model_cfg = tiny_config().model
        if name == SPARSE_MODEL:  # the commit phase switched it to the served gate rule
            model_cfg = replace(model_cfg, gate_rule=tiny_config().commit.gate_rule)
        assert load_checkpoint(folder / CHECKPOINT_FILE).cfg == model_cfg
        if name == SPARSE_MODEL:
            assert outputs[2].shape == (1, len(circuit.edges))
            assert (folder / EXPLAIN_FILE).is_file() and (folder / ABLATION_FILE).is_file()
    assert (tiny_repository / FIGURE_FILE).stat().st_size > 10_000
    # an accurate record of what built it, so the default checkout's check calls it stale
    assert recorded_fingerprint(tiny_repository) == export_fingerprint(tiny_config())
    assert is_stale(tiny_repository, ExportConfig())


real = pytest.mark.skipif(not (model_dir(REAL_REPOSITORY, SPARSE_MODEL) / MODEL_FILE).exists(),
                          reason=f"no exported model repository at {REAL_REPOSITORY} (run `make export`)")


def _build(name):
    folder = model_dir(REAL_REPOSITORY, name)
    data = (folder / MODEL_FILE).read_bytes()
    return (data, json.loads((folder / MANIFEST_FILE).read_text()),
            json.loads((folder / CIRCUIT_FILE).read_text()))


@real
@pytest.mark.parametrize("name", [DENSE_MODEL, SPARSE_MODEL])
def test_real_build_answers_all_10000_problems_and_matches_its_manifest(name):
    data, manifest, circuit = _build(name)
    assert hashlib.sha256(data).hexdigest() == manifest["sha256"]
    a = np.repeat(np.arange(100, dtype=np.int64), 100)
    b = np.tile(np.arange(100, dtype=np.int64), 100)
    outputs = session(data).run(None, {INPUT_A: a, INPUT_B: b})
    np.testing.assert_array_equal(outputs[0], a + b)
    digits = np.array([[int(c) for c in f"{s:05d}"] for s in a + b])
    np.testing.assert_array_equal(outputs[1], digits)
    assert manifest["accuracy"]["correct"] == 10_000
    if name == SPARSE_MODEL:
        edges = outputs[2]
        assert edges.shape == (10_000, len(circuit["edges"]))
        assert edges.sum(0).tolist() == [e["count"] for e in circuit["edges"]]
        assert abs(edges.sum(1).mean() - circuit["edges_per_problem"]["mean"]) < 1e-3


@real
def test_real_sparse_build_is_smaller_and_sparse():
    dense, d_manifest, _ = _build(DENSE_MODEL)
    sparse, s_manifest, s_circuit = _build(SPARSE_MODEL)
    d_graph, s_graph = onnx.load_from_string(dense), onnx.load_from_string(sparse)
    assert len(s_graph.graph.node) < len(d_graph.graph.node)
    assert s_manifest["parameters"]["kept"] < d_manifest["parameters"]["kept"]
    # far fewer edges per problem than the dense build's every causal pair
    assert s_circuit["edges_per_problem"]["mean"] * 20 < d_manifest["edges"]["per_problem_mean"]
    # ... and at most the config's target share of all causal pairs (1.5% by default), while exact
    targets = s_manifest["config"]["sparsify"]
    assert s_circuit["density"] <= targets["target_edge_density"]
    # the MLP, most of the compute, keeps at most the config's share of its neurons (half by default)
    kept, total = sum(s_circuit["neurons_kept"]), sum(s_circuit["neurons_total"])
    assert kept <= targets["target_neuron_fraction"] * total
    assert OUTPUT_EDGES in [o.name for o in s_graph.graph.output]
    assert (REAL_REPOSITORY / FIGURE_FILE).stat().st_size > 10_000
