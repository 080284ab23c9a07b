"""The real exported models through the service: all 10,000 sums via AddBatch, traces equal torch's active edges.

Uses the repository at $ADDER_MODEL_REPOSITORY (default <repo>/model_repository), which `make test`
builds first; skipped only when it is absent.
"""

import os
import random
from pathlib import Path

import numpy as np
import pytest

from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2

ROOT = Path(__file__).resolve().parents[1]


def _repository() -> Path:
    path = Path(os.environ.get("ADDER_MODEL_REPOSITORY", ROOT / "model_repository"))
    return path if path.is_absolute() or path.exists() else ROOT / path


REPOSITORY = _repository()
pytestmark = pytest.mark.skipif(
    not (REPOSITORY / "adder-sparse" / "1" / "model.onnx").exists(),
    reason=f"no exported model repository at {REPOSITORY}: run `make export` (make test does it first)")

SAMPLES = [(36, 28), (0, 0), (99, 99), (50, 50), (19, 1), (45, 54), (9, 90), (1, 99)]
SAMPLES += [(random.Random(seed).randrange(100), random.Random(seed + 1000).randrange(100)) for seed in range(12)]


@pytest.fixture(scope="module")
def real():
    with running_server(REPOSITORY) as server, connect(server.port) as client:
        yield server, client


def test_both_models_pass_their_integrity_check_and_self_test(real):
    _, client = real
    models = {m.name: m for m in client.adder.ListModels(adder_pb2.ListModelsRequest(), timeout=30).models}
    for name in ("adder-sparse", "adder-dense"):
        assert models[name].ready, f"{name}: {models[name].reason}"
        assert models[name].self_test_correct == 10_000
    assert client.status("") == "SERVING"


@pytest.mark.parametrize("model", ["adder-sparse", "adder-dense"])
def test_all_10000_sums_through_add_batch(real, model):
    _, client = real
    values = np.arange(100)
    a, b = (x.ravel().tolist() for x in np.meshgrid(values, values, indexing="ij"))
    response = client.adder.AddBatch(adder_pb2.AddBatchRequest(a=a, b=b, model=model), timeout=120)
    assert response.model == model
    assert list(response.sums) == [x + y for x, y in zip(a, b)]
    assert list(response.answers) == [f"{x + y:05d}" for x, y in zip(a, b)]


def test_trace_edges_equal_the_torch_models_active_edges(real):
    import torch  # tests may use torch; the service never does
    from export.circuit import active_edges
    from export.model import load_checkpoint

    _, client = real
    torch.set_num_threads(1)
    model = load_checkpoint(REPOSITORY / "adder-sparse" / "1" / "model.pt")
    for a, b in SAMPLES:
        response = client.adder.Add(adder_pb2.AddRequest(a=a, b=b, model="adder-sparse", trace=True), timeout=30)
        served = sorted((e.layer, e.head, e.query, e.key) for e in response.edges)
        expected = sorted(tuple(int(v) for v in edge) for edge in active_edges(model, a, b))
        assert served == expected, f"{a}+{b}: served {served}, torch {expected}"
        assert response.sum == a + b


def test_circuit_matches_the_manifest(real):
    server, client = real
    for name in ("adder-sparse", "adder-dense"):
        circuit = client.adder.GetCircuit(adder_pb2.GetCircuitRequest(model=name), timeout=30)
        manifest = server.models.models[name].files.manifest
        assert circuit.sha256 == manifest.sha256
        assert len(circuit.edges) == len(server.models.models[name].files.circuit.edges) == manifest.edges.distinct
        assert circuit.accuracy.correct == manifest.accuracy.correct == 10_000
    sparse = client.adder.GetCircuit(adder_pb2.GetCircuitRequest(model="adder-sparse"), timeout=30)
    dense = client.adder.GetCircuit(adder_pb2.GetCircuitRequest(model="adder-dense"), timeout=30)
    assert len(sparse.edges) < len(dense.edges) and sparse.parameters_kept < dense.parameters_kept
