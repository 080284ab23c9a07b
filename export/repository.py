"""Write one build into the model repository: model.onnx, manifest.json, circuit.json, model.pt."""

import hashlib
import json
import platform
from pathlib import Path

import onnx
import onnxruntime
import torch

from contract import (ANSWER_DIGITS, CHECKPOINT_FILE, CIRCUIT_FILE, INPUT_A, INPUT_B, MANIFEST_FILE,
                      MODEL_FILE, MODEL_VERSION, OUTPUT_DIGITS, OUTPUT_EDGES, OUTPUT_SUM, model_dir)
from export.circuit import Circuit
from export.compile import CompiledModel
from export.model import save_checkpoint


def library_versions() -> dict:
    return {"python": platform.python_version(), "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def tensor_signature(n_edges: int) -> tuple[list, list]:
    inputs = [{"name": n, "datatype": "INT64", "shape": [-1]} for n in (INPUT_A, INPUT_B)]
    outputs = [{"name": OUTPUT_SUM, "datatype": "INT64", "shape": [-1]},
               {"name": OUTPUT_DIGITS, "datatype": "INT64", "shape": [-1, ANSWER_DIGITS]}]
    if n_edges:
        outputs.append({"name": OUTPUT_EDGES, "datatype": "BOOL", "shape": [-1, n_edges]})
    return inputs, outputs


def write_build(repository: Path, model, gated: bool, circuit: Circuit, compiled: CompiledModel,
                manifest_extra: dict) -> dict:
    """Write the build's files; return its manifest (sha256 of the exact bytes written)."""
    folder = model_dir(repository, circuit.model, MODEL_VERSION)
    folder.mkdir(parents=True, exist_ok=True)
    data = compiled.proto.SerializeToString()
    (folder / MODEL_FILE).write_bytes(data)
    circuit.save(folder / CIRCUIT_FILE)
    save_checkpoint(model, folder / CHECKPOINT_FILE, gated)
    inputs, outputs = tensor_signature(compiled.n_edges)
    per = circuit.edges_per_problem
    manifest = {
        "model": circuit.model, "version": MODEL_VERSION, "file": MODEL_FILE,
        "sha256": hashlib.sha256(data).hexdigest(), "opset": compiled.proto.opset_import[0].version,
        "inputs": inputs, "outputs": outputs, "gate_rule": circuit.gate_rule,
        "versions": library_versions(),
        "parameters": {"total": sum(p.numel() for p in model.parameters()),
                       "kept": compiled.parameters_kept, "table_elements": compiled.table_elements},
        "edges": {"per_problem_mean": per["mean"], "per_problem_min": per["min"],
                  "per_problem_max": per["max"], "density": circuit.density,
                  "possible_per_problem": circuit.possible_edges_per_problem,
                  "distinct": len(circuit.edges)},
        "neurons": {"kept": circuit.neurons_kept, "total": circuit.neurons_total},
        "onnx_nodes": len(compiled.proto.graph.node),
        **manifest_extra,
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    return manifest
