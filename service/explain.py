"""Explain one answer: close each active attention edge alone, live in explain.onnx, through its own batcher.

explain.onnx is the sparse model.onnx plus a required input `edge_mask` BOOL [N, E] (columns = the
circuit's edges; false closes that gate). model.onnx stays as it is, so Add pays nothing for this.
At load it is proven like model.onnx: its manifest sha256, its tensors, and with every edge open the
same answers and edges as model.onnx on all 10,000 problems. `explain_problem` is what the gRPC
handler (and any other front end) calls.
"""

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from contract import DENSE_MODEL, INPUT_A, INPUT_B, INPUT_EDGE_MASK, OUTPUT_EDGES
from service.batcher import Batcher, Watch
from service.errors import FailedPrecondition
from service.repository import ModelFiles, RepositoryError
from contract.domain import operands
from service.runtime import Answers, EdgeKey, OnnxModel, answer_text


class MaskedOnnxModel(OnnxModel):
    """An OnnxModel whose graph also takes `edge_mask` BOOL [N, E]: `run(a, b, mask)`."""

    def __init__(self, path: Path, n_edges: int, intra_op_threads: int = 1):
        super().__init__(path, intra_op_threads)
        inputs = {i.name: i for i in self.session.get_inputs()}
        mask = inputs.get(INPUT_EDGE_MASK)
        if mask is None or mask.type != "tensor(bool)" or len(mask.shape) != 2 or mask.shape[1] != n_edges:
            raise RepositoryError(f"{path} must take {INPUT_EDGE_MASK} BOOL [N, {n_edges}] (one column per circuit "
                                  f"edge), it has {mask.type + str(mask.shape) if mask else 'no such input'}")
        if not self.has_edges:
            raise RepositoryError(f"{path} lacks the {OUTPUT_EDGES} output")

@dataclass
class Explainer:
    graph: MaskedOnnxModel
    batcher: Batcher
    sha256: str


def load_explain_graph(files: ModelFiles, n_edges: int, served: OnnxModel, threads: int) -> MaskedOnnxModel | None:
    """The build's explain.onnx proven against its manifest and model.onnx; None when it has none."""
    entry = files.manifest.explain
    if entry is None:
        return None
    name, sha256 = entry.file, entry.sha256
    if Path(name).name != name or name in ("", ".", ".."):
        raise RepositoryError("manifest.json: explain.file must name a file in the model's folder")
    if entry.edges != n_edges:
        raise RepositoryError(f"manifest.json: explain.edges is {entry.edges}, circuit.json has {n_edges} edges")
    path = files.folder / name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RepositoryError(f"cannot read {path}: {error.strerror}") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RepositoryError(f"sha256 mismatch for {path}: manifest says {sha256}, "
                              f"file is {hashlib.sha256(data).hexdigest()}")
    graph = MaskedOnnxModel(path, n_edges, threads)
    a, b = operands()
    opened, expected = graph.run(a, b, np.ones((len(a), n_edges), bool)), served.run(a, b)
    differ = ~((opened.sums == expected.sums) & (opened.digits == expected.digits).all(1)
               & (opened.edges == expected.edges).all(1))
    if differ.any():
        i = int(np.flatnonzero(differ)[0])
        raise RepositoryError(f"{path} with every edge open differs from {files.onnx_path.name} on "
                              f"{int(differ.sum())} problems, first {a[i]}+{b[i]}")
    return graph


@dataclass(frozen=True)
class EdgeAblation:
    edge: EdgeKey
    necessary: bool  # closing it alone changes the answer
    sum_without: int
    answer_without: str
    changed_digit: int  # first answer digit (0 = most significant) that changes; -1: none


@dataclass(frozen=True)
class Explanation:
    model: str
    model_version: str
    a: int
    b: int
    sum: int
    answer: str
    edges: list[EdgeAblation]  # every edge active for the problem, in circuit order
    necessary_only_sum: int  # the answer with only the necessary edges open
    necessary_only_answer: str
    necessary_only_right: bool

    def to_dict(self) -> dict:
        return asdict(self)


def explain_problem(model, a: int, b: int, time_left: Callable[[], float | None] = lambda: None,
                    watch: Watch | None = None) -> Explanation:
    """Explain a + b (operands already validated) on a ready ServedModel.

    Two batched runs: every circuit edge closed alone, plus one row with all open (closing an edge
    that is not active changes nothing, so all E columns cost one run, no first run to find the
    active ones); then the row with only the necessary edges open. Raises FailedPrecondition for a
    build without explain.onnx, DeadlineExceeded/Cancelled as Add does.
    """
    explainer = model.explainer
    if explainer is None:
        if model.name == DENSE_MODEL or not model.edges:
            raise FailedPrecondition(f"model {model.name} is the dense build: it has no attention gates to close, "
                                     f"so it cannot be explained; use a sparse build (adder-sparse)")
        raise FailedPrecondition(f"model {model.name} version {model.version} was exported without explain.onnx; "
                                 f"re-export it to explain its answers")
    n = len(model.edges)
    closed_alone = ~np.eye(n + 1, n, k=-1, dtype=bool)  # row 0: all open; row e + 1: edge e closed
    runs = _run(explainer, a, b, closed_alone, time_left, watch)
    base = runs.digits[0]
    ablations = []
    for e in np.flatnonzero(runs.edges[0]):
        digits = runs.digits[e + 1]
        changed = np.flatnonzero(digits != base)
        ablations.append(EdgeAblation(model.edges[e], bool(len(changed)), int(runs.sums[e + 1]), answer_text(digits),
                                      int(changed[0]) if len(changed) else -1))
    necessary = np.zeros((1, n), bool)
    necessary[0, [model.edges.index(x.edge) for x in ablations if x.necessary]] = True
    only = _run(explainer, a, b, necessary, time_left, watch)
    return Explanation(model.name, model.version, a, b, int(runs.sums[0]), answer_text(base), ablations,
                       int(only.sums[0]), answer_text(only.digits[0]), int(only.sums[0]) == a + b)


def _run(explainer: Explainer, a: int, b: int, mask: np.ndarray, time_left, watch) -> Answers:
    rows = len(mask)
    return explainer.batcher.infer(np.full(rows, a, np.int64), np.full(rows, b, np.int64), time_left(), watch,
                                   mask=mask)
