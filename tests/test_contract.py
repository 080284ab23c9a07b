"""The one contract for manifest.json and circuit.json: the service refuses a file that breaks it, naming
the field, and the export and the fixture repository both write files that keep it."""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from contract import CIRCUIT_FILE, DENSE_MODEL, MANIFEST_FILE, MODEL_FILE, SPARSE_MODEL, model_dir
from contract.circuit import read_circuit
from contract.manifest import manifest_from_data, read_manifest
from contract.schema import ContractError, from_data
from fixtures.fakes import HANG_S
from fixtures.service_repository import build_repository
from fixtures.service_servers import connect, running_server
from service.generated.adder.v1 import adder_pb2


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def rename(section: str, old: str, new: str):
    return lambda data: data[section].__setitem__(new, data[section].pop(old))


BROKEN = {
    "missing": (MANIFEST_FILE, lambda d: d["edges"].pop("density"), "manifest.json: edges.density is missing"),
    "renamed": (MANIFEST_FILE, rename("parameters", "total", "count"),
                "manifest.json: parameters.total is missing (found instead: 'count')"),
    "mistyped": (MANIFEST_FILE, lambda d: d["accuracy"].__setitem__("correct", "10000"),
                 "manifest.json: accuracy.correct must be int, got str"),
    "unknown": (MANIFEST_FILE, lambda d: d.__setitem__("sha265", "typo"), "manifest.json: sha265 is not a field"),
    "circuit edge": (CIRCUIT_FILE, lambda d: d["edges"][2].pop("carry_count"),
                     "circuit.json: edges[2].carry_count is missing"),
    "circuit stats": (CIRCUIT_FILE, lambda d: d["edges_per_problem"]["carry"].__setitem__("mean", None),
                      "circuit.json: edges_per_problem.carry.mean must be a number, got null"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_file_that_breaks_the_contract_fails_its_model_with_the_field_named(tmp_path, case):
    file, change, reason = BROKEN[case]
    repository = build_repository(tmp_path)
    edit_json(model_dir(repository, SPARSE_MODEL) / file, change)
    with running_server(repository) as server, connect(server.port) as client:
        models = {m.name: m for m in client.adder.ListModels(adder_pb2.ListModelsRequest(), timeout=HANG_S).models}
        assert models[DENSE_MODEL].state == "READY"
        assert models[SPARSE_MODEL].state == "FAILED"
        assert models[SPARSE_MODEL].reason.startswith(f"{SPARSE_MODEL}/1/{reason}"), models[SPARSE_MODEL].reason
        assert client.status(SPARSE_MODEL) == "NOT_SERVING" and client.status("") == "NOT_SERVING"


def test_the_fixture_repository_round_trips_through_the_contract(tmp_path):
    repository = build_repository(tmp_path)
    for name in (DENSE_MODEL, SPARSE_MODEL):
        folder = model_dir(repository, name)
        manifest = read_manifest(folder / MANIFEST_FILE)
        assert manifest_from_data(json.loads((folder / MANIFEST_FILE).read_text())) == manifest
        assert read_circuit(folder / CIRCUIT_FILE).model == name == manifest.model


REAL = Path(os.environ.get("ADDER_MODEL_REPOSITORY", Path(__file__).parents[1] / "model_repository"))


@pytest.mark.skipif(not (model_dir(REAL, SPARSE_MODEL) / MODEL_FILE).exists(), reason=f"no export at {REAL}")
def test_the_exported_repository_keeps_the_contract():
    for name in (DENSE_MODEL, SPARSE_MODEL):
        manifest = read_manifest(model_dir(REAL, name) / MANIFEST_FILE)
        circuit = read_circuit(model_dir(REAL, name) / CIRCUIT_FILE)
        assert manifest.edges.distinct == len(circuit.edges) and manifest.model == circuit.model == name


@dataclass(frozen=True)
class Later:
    kept: int
    necessity: float | None = None  # how an optional field is added: a default


def test_an_optional_field_may_be_absent_but_is_type_checked_when_present():
    assert from_data(Later, {"kept": 3}, "x.json") == Later(3)
    assert from_data(Later, {"kept": 3, "necessity": 1}, "x.json") == Later(3, 1.0)
    with pytest.raises(ContractError, match=r"^x.json: necessity must be a number, got str$"):
        from_data(Later, {"kept": 3, "necessity": "high"}, "x.json")
    with pytest.raises(ContractError, match=r"^x.json: kept must be int, got bool$"):
        from_data(Later, {"kept": True}, "x.json")


def test_the_compiler_writes_what_the_service_reads(tmp_path):
    """The real export path (circuit, compile, write_build) on the seconds-long tiny model: the service's
    reader accepts both builds and sees the same edges (the tiny model is not exact, so it is not served)."""
    from export.circuit import extract_circuit
    from export.compile import compile_model
    from export.repository import write_build
    from export_support import hand_made_sparse, tiny_base
    from service.repository import read_model, verify_sha256

    cfg, domain, base = tiny_base()
    _, _, sparse = hand_made_sparse()
    accuracy = {"correct": 0, "total": 10_000, "exact_match": 0.0, "train": 0.0, "test": 0.0,
                "edge_output_mismatches": 0}
    extra = {"config": cfg.to_dict(), "seed": cfg.seed, "training": {}, "accuracy": accuracy}
    for name, model, gated in ((DENSE_MODEL, base, False), (SPARSE_MODEL, sparse, True)):
        circuit = extract_circuit(model, name, domain.a, domain.b, gated, range(5, 10))
        write_build(tmp_path, model, gated, circuit, compile_model(model, circuit, gated, cfg.opset), extra)
        files = read_model(tmp_path, name, "1")
        verify_sha256(files)
        assert files.circuit == circuit and files.manifest.edges.distinct == len(circuit.edges)
        assert [t.name for t in files.manifest.outputs] == (["sum", "digits", "edges"] if gated else ["sum", "digits"])
    with pytest.raises(ContractError, match="manifest.json: accuracy is missing"):
        write_build(tmp_path, sparse, True, circuit, compile_model(sparse, circuit, True, cfg.opset),
                    {k: v for k, v in extra.items() if k != "accuracy"})
