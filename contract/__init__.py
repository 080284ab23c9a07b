"""Names shared by export/ and service/: models, tensors, task shape and model-repository layout.

export/ writes the model repository, service/ reads it; this module is the only code both import.
"""

from pathlib import Path

# The task: `a1 a2 + b1 b2 = c1 c2 c3 c4 c5`, operands 00..99, the sum as 5 digits.
VOCAB = "0123456789+="
OPERAND_MIN, OPERAND_MAX = 0, 99
OPERAND_DIGITS = 2
ANSWER_DIGITS = 5
SEQUENCE_LENGTH = 2 * OPERAND_DIGITS + 2 + ANSWER_DIGITS  # 11 tokens
DOMAIN_SIZE = (OPERAND_MAX - OPERAND_MIN + 1) ** 2  # 10,000 problems

# The two builds served, Triton layout: <repository>/<model>/<version>/model.onnx.
DENSE_MODEL = "adder-dense"
SPARSE_MODEL = "adder-sparse"
MODELS = (DENSE_MODEL, SPARSE_MODEL)
DEFAULT_MODEL = SPARSE_MODEL
MODEL_VERSION = "1"
MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"  # sha256, config, seed, versions, accuracy, parameters, edges
CIRCUIT_FILE = "circuit.json"  # the Circuit over the whole domain (see export/circuit.py)
EXPLAIN_FILE = "explain.onnx"  # sparse build: model.onnx plus an edge_mask input (Explain rows only)
ABLATION_FILE = "ablation.npz"  # sparse build: the export's exhaustive single-edge ablation table
CHECKPOINT_FILE = "model.pt"  # the torch model the ONNX build was compiled from (export side only)
FIGURE_FILE = "circuit.png"  # written at the repository root

# The ONNX graph contract: one session.run does the whole greedy decode.
INPUT_A = "a"  # INT64 [N]
INPUT_B = "b"  # INT64 [N]
INPUT_EDGE_MASK = "edge_mask"  # BOOL [N, E], explain.onnx only: false closes circuit["edges"][e]
OUTPUT_SUM = "sum"  # INT64 [N]
OUTPUT_DIGITS = "digits"  # INT64 [N, 5], most significant first
OUTPUT_EDGES = "edges"  # BOOL [N, E], sparse build only: column e is circuit["edges"][e]


def model_dir(repository: Path | str, model: str, version: str = MODEL_VERSION) -> Path:
    """The folder holding one version of one model."""
    return Path(repository) / model / version
