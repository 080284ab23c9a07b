"""Prove a build on the whole domain: its ONNX answers equal its torch model's and are all correct."""

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from contract import INPUT_A, INPUT_B
from export.circuit import Circuit, hard_gates
from export.evaluate import greedy_digits
from export.task import Domain


class VerificationError(RuntimeError):
    """A build failed its exhaustive check; the message says which problems and how."""


@dataclass(frozen=True)
class Verification:
    correct: int
    total: int
    train_accuracy: float
    test_accuracy: float
    edge_mismatches: int  # problems whose ONNX edge output differs from the torch gates


def session(model_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def verify_build(name: str, model_bytes: bytes, model, circuit: Circuit, domain: Domain, gated: bool,
                 require_exact: bool = True) -> Verification:
    """Run all 10,000 problems through ONNX Runtime and torch; raise VerificationError on any gap
    (and, with `require_exact`, on any wrong answer)."""
    a, b = domain.a.numpy(), domain.b.numpy()
    outputs = session(model_bytes).run(None, {INPUT_A: a, INPUT_B: b})
    onnx_sum, onnx_digits = outputs[0], outputs[1]
    torch_digits = greedy_digits(model, domain.tokens, gated).numpy()
    differ = np.flatnonzero((onnx_digits != torch_digits).any(axis=1))
    if len(differ):
        i = differ[0]
        raise VerificationError(
            f"{name}: ONNX and torch disagree on {len(differ)} of {len(a)} problems, "
            f"first {a[i]}+{b[i]}: onnx {onnx_digits[i].tolist()} torch {torch_digits[i].tolist()}")
    right = onnx_sum == a + b
    if require_exact and not right.all():
        wrong = np.flatnonzero(~right)
        i = wrong[0]
        raise VerificationError(
            f"{name}: {len(wrong)} of {len(a)} problems answered wrong, first {a[i]}+{b[i]} = {onnx_sum[i]}")
    mismatches = 0
    if gated:
        g = hard_gates(model, domain.a, domain.b)
        idx = [(e.layer, e.head, e.query, e.key) for e in circuit.edges]
        columns = [[edge[axis] for edge in idx] for axis in range(4)]  # layers, heads, queries, keys
        torch_edges = g[(slice(None), *columns)].numpy()  # (N, E); E may be 0
        mismatches = int((torch_edges != outputs[2]).any(axis=1).sum())
    return Verification(correct=int(right.sum()), total=len(a),
                        train_accuracy=float(right[domain.train.numpy()].mean()),
                        test_accuracy=float(right[domain.test.numpy()].mean()),
                        edge_mismatches=mismatches)
