"""Write one build into the model repository: model.onnx, manifest.json, circuit.json, model.pt."""

import hashlib
import platform
from pathlib import Path

import onnx
import onnxruntime
import torch

from contract import CHECKPOINT_FILE, CIRCUIT_FILE, MANIFEST_FILE, MODEL_FILE, MODEL_VERSION, model_dir
from contract.circuit import Circuit
from contract.manifest import Manifest, manifest_from_data, write_manifest
from contract.schema import to_data
from contract.tensors import tensor_signature
from export.compile import CompiledModel
from export.model import save_checkpoint


def library_versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def build_manifest(model, circuit: Circuit, compiled: CompiledModel, data: bytes, manifest_extra: dict) -> Manifest:
    """The typed manifest of one build; a field the contract lacks or mistypes fails here, at export."""
    inputs, outputs = tensor_signature(compiled.n_edges)
    per = circuit.edges_per_problem
    return manifest_from_data({
        "model": circuit.model, "version": MODEL_VERSION, "file": MODEL_FILE,
        "sha256": hashlib.sha256(data).hexdigest(), "opset": compiled.proto.opset_import[0].version,
        "inputs": [to_data(t) for t in inputs], "outputs": [to_data(t) for t in outputs],
        "gate_rule": circuit.gate_rule, "versions": library_versions(),
        "parameters": {"total": sum(p.numel() for p in model.parameters()),
                       "kept": compiled.parameters_kept, "table_elements": compiled.table_elements},
        "edges": {"per_problem_mean": per.mean, "per_problem_min": per.min,
                  "per_problem_max": per.max, "density": circuit.density,
                  "possible_per_problem": circuit.possible_edges_per_problem,
                  "distinct": len(circuit.edges)},
        "neurons": {"kept": circuit.neurons_kept, "total": circuit.neurons_total},
        "onnx_nodes": len(compiled.proto.graph.node),
        **manifest_extra,
    })


def write_build(repository: Path, model, gated: bool, circuit: Circuit, compiled: CompiledModel,
                manifest_extra: dict) -> dict:
    """Write the build's files; return its manifest as JSON data (sha256 of the exact bytes written)."""
    folder = model_dir(repository, circuit.model, MODEL_VERSION)
    folder.mkdir(parents=True, exist_ok=True)
    data = compiled.proto.SerializeToString()
    manifest = build_manifest(model, circuit, compiled, data, manifest_extra)
    (folder / MODEL_FILE).write_bytes(data)
    circuit.save(folder / CIRCUIT_FILE)
    save_checkpoint(model, folder / CHECKPOINT_FILE, gated)
    write_manifest(manifest, folder / MANIFEST_FILE)
    return to_data(manifest)
