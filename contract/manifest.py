"""manifest.json: what one build is (file, sha256, tensors, sizes, accuracy, how it was made), typed."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.schema import from_data, read, write
from contract.tensors import TensorSpec


@dataclass(frozen=True)
class Parameters:
    total: int  # of the torch model
    kept: int  # reachable after sparsification (what the ONNX graph computes with)
    table_elements: int  # precomputed lookup-table entries in the graph


@dataclass(frozen=True)
class EdgeSummary:
    per_problem_mean: float
    per_problem_min: int
    per_problem_max: int
    density: float  # mean active edges per problem / possible_per_problem
    possible_per_problem: int
    distinct: int  # edges in circuit.json


@dataclass(frozen=True)
class NeuronCounts:
    kept: list[int]  # per layer
    total: list[int]


@dataclass(frozen=True)
class Accuracy:
    correct: int  # of `total` problems, sum and all five digits right
    total: int
    exact_match: float
    train: float
    test: float
    edge_output_mismatches: int  # problems whose `edges` output differs from the torch gates


@dataclass(frozen=True)
class ExplainGraph:
    """Sparse builds: the maskable graph Explain runs (contract.EXPLAIN_FILE)."""
    file: str  # in the manifest's own folder
    sha256: str  # of that file's bytes
    input: str  # the mask input's name (contract.INPUT_EDGE_MASK), BOOL [N, edges]
    edges: int  # mask columns = circuit.json's edges
    ablation_table: str  # the export's single-edge ablation table, beside it


@dataclass(frozen=True)
class Manifest:
    model: str
    version: str
    file: str  # the ONNX file, in the manifest's own folder
    sha256: str  # of that file's bytes
    opset: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    gate_rule: str
    versions: dict[str, str]  # library versions the export ran with
    parameters: Parameters
    edges: EdgeSummary
    neurons: NeuronCounts
    onnx_nodes: int
    config: dict[str, Any]  # the export config (descriptive: its shape is the export's)
    seed: int
    training: dict[str, Any]  # steps, losses, timings (descriptive)
    accuracy: Accuracy
    explain: ExplainGraph | None = None  # sparse builds exported with Explain support


def manifest_from_data(data: Any, where: str = "manifest.json") -> Manifest:
    return from_data(Manifest, data, where)


def read_manifest(path: Path) -> Manifest:
    return read(Manifest, path)


def write_manifest(manifest: Manifest, path: Path) -> None:
    write(manifest, path)
