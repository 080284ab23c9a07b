"""onnxruntime sessions for the adder graphs: run a batch, decode answers and edges, self-test the domain."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from contract import INPUT_A, INPUT_B, INPUT_EDGE_MASK, OUTPUT_DIGITS, OUTPUT_EDGES, OUTPUT_SUM
from contract.domain import answer_digits, operands

# An attention edge as a key: (layer, head, query position, key position). contract.circuit.Edge is the
# dataclass with its counts; the service needs only the position, as a hashable tuple.
EdgeKey = tuple[int, int, int, int]
MAX_ROWS_PER_RUN = 1024  # larger requests run in slices: bounded memory, per-row cost already flat here


@dataclass(frozen=True)
class Answers:
    sums: np.ndarray  # int64 [N]
    digits: np.ndarray  # int64 [N, 5], most significant first
    edges: np.ndarray | None  # bool [N, E] (sparse build), column e is circuit.edges[e]

    def rows(self, start: int, stop: int) -> "Answers":
        edges = None if self.edges is None else self.edges[start:stop]
        return Answers(self.sums[start:stop], self.digits[start:stop], edges)


class OnnxModel:
    """One InferenceSession; `run` is thread-safe (ORT allows concurrent runs) and releases the GIL."""

    def __init__(self, path: Path, intra_op_threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: ORT's own lines are not JSON and warnings are noise here
        # Spinning workers burn a core between runs; on a small CPU budget gRPC needs it more.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        outputs = {o.name for o in self.session.get_outputs()}
        inputs = {i.name for i in self.session.get_inputs()}
        missing = ({INPUT_A, INPUT_B} - inputs) | ({OUTPUT_SUM, OUTPUT_DIGITS} - outputs)
        if missing:
            raise ValueError(f"{path} lacks the contract's tensors {sorted(missing)}")
        self.output_names = [n for n in (OUTPUT_SUM, OUTPUT_DIGITS, OUTPUT_EDGES) if n in outputs]

    @property
    def has_edges(self) -> bool:
        return OUTPUT_EDGES in self.output_names

    def run(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> Answers:
        """`mask`: the `edge_mask` input's rows, for graphs that take one (explain.onnx)."""
        if len(a) <= MAX_ROWS_PER_RUN:
            return self._run(a, b, mask)
        # ORT's arena keeps its peak: a 10,000-row run would hold hundreds of MB for good
        parts = [self._run(a[i:i + MAX_ROWS_PER_RUN], b[i:i + MAX_ROWS_PER_RUN],
                           None if mask is None else mask[i:i + MAX_ROWS_PER_RUN])
                 for i in range(0, len(a), MAX_ROWS_PER_RUN)]
        edges = None if parts[0].edges is None else np.concatenate([p.edges for p in parts])
        return Answers(np.concatenate([p.sums for p in parts]), np.concatenate([p.digits for p in parts]), edges)

    def _run(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None) -> Answers:
        feed = {INPUT_A: a, INPUT_B: b} | ({} if mask is None else {INPUT_EDGE_MASK: mask})
        values = self.session.run(self.output_names, feed)
        out = dict(zip(self.output_names, values))
        return Answers(out[OUTPUT_SUM], out[OUTPUT_DIGITS], out.get(OUTPUT_EDGES))


def answer_text(digits: np.ndarray) -> str:
    """The five answer tokens of one problem as text ("00064")."""
    return "".join(map(str, digits.tolist()))


def edges_of_answer(answers: Answers, row: int, columns: list[EdgeKey]) -> list[EdgeKey]:
    """The edges active for one problem; a model without an edges output uses all its edges always."""
    if answers.edges is None:
        return list(columns)
    return [columns[i] for i in np.flatnonzero(answers.edges[row])]


@dataclass(frozen=True)
class SelfTest:
    correct: int
    total: int
    first_wrong: str  # e.g. "36+28 -> 00065", empty when all are right

    @property
    def passed(self) -> bool:
        return self.correct == self.total


def self_test(model: OnnxModel, n_edges: int) -> SelfTest:
    """Run all 10,000 problems; a problem is right when sum and all five digits are."""
    a, b = operands()
    answers = model.run(a, b)
    truth = a + b
    right = (answers.sums == truth) & np.all(answers.digits == answer_digits(truth), axis=1)
    if answers.edges is not None and answers.edges.shape != (len(a), n_edges):
        return SelfTest(0, len(a), f"edges output has shape {answers.edges.shape}, circuit has {n_edges} edges")
    wrong = np.flatnonzero(~right)
    first = ""
    if len(wrong):
        i = wrong[0]
        first = f"{a[i]}+{b[i]} -> {answer_text(answers.digits[i])} (sum {answers.sums[i]})"
    return SelfTest(int(right.sum()), len(a), first)
