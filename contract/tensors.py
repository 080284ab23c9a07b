"""The ONNX graph's tensor signature as the manifest states it (KServe v2 names and datatypes)."""

from dataclasses import dataclass

from contract import ANSWER_DIGITS, INPUT_A, INPUT_B, OUTPUT_DIGITS, OUTPUT_EDGES, OUTPUT_SUM


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str  # "INT64", "BOOL"
    shape: list[int]  # -1: any size (the batch)


def tensor_signature(n_edges: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of a build; a build with circuit edges (the sparse one) also outputs them."""
    inputs = [TensorSpec(INPUT_A, "INT64", [-1]), TensorSpec(INPUT_B, "INT64", [-1])]
    outputs = [TensorSpec(OUTPUT_SUM, "INT64", [-1]), TensorSpec(OUTPUT_DIGITS, "INT64", [-1, ANSWER_DIGITS])]
    if n_edges:
        outputs.append(TensorSpec(OUTPUT_EDGES, "BOOL", [-1, n_edges]))
    return inputs, outputs
