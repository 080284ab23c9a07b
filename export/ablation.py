"""Explain the sparse build: explain.onnx (an `edge_mask` input) and the exhaustive single-edge ablation.

For every problem and every edge active on it, the answer with that edge alone closed, decoded
greedily in torch and in ONNX Runtime, which must agree on every row. Closing an edge means its gate
is 0 at every decode step, under the model's gate rule (renormalised: the edge also leaves its row's
softmax denominator, as the served model's closed edges do); edges outside the circuit stay closed as in model.onnx (the compiled graph
has no other edges), so torch runs with the same restriction. Also here: the answer with only the
necessary edges open, and a greedy sufficient set per problem.

`python -m export.ablation --repository R` adds all of it to an existing repository from its model.pt.
"""

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch

from contract import (ABLATION_FILE, ANSWER_DIGITS, CHECKPOINT_FILE, CIRCUIT_FILE, DENSE_MODEL, EXPLAIN_FILE,
                      FIGURE_FILE, INPUT_A, INPUT_B, INPUT_EDGE_MASK, MANIFEST_FILE, SPARSE_MODEL, model_dir)
from contract.circuit import NecessaryPerProblem, SufficientPerProblem
from export.circuit import Circuit, problem_stats
from export.compile import compile_model
from export.figure import FigureProblem, draw_figure
from export.model import AdderTransformer, load_checkpoint
from export.task import ANSWER_START, PREDICT_FROM, Domain, has_carry, make_domain, sequences
from export.verify import VerificationError, session

FIGURE_PROBLEMS = ((53, 21), (36, 28), (43, 59))  # the paper's v1 figure
ORT_ROWS = 8192  # rows per session.run: bounded memory
TORCH_ROWS = 8192  # rows per torch forward
PLACES = 10 ** np.arange(ANSWER_DIGITS - 1, -1, -1, dtype=np.int64)


@dataclass(frozen=True)
class AblationTable:
    """Per problem (a-major, the domain's order) and circuit edge (circuit.json's column order)."""

    a: np.ndarray  # (P,) int64
    b: np.ndarray
    answer: np.ndarray  # (P,) int64: the model's sum, every edge open
    active: np.ndarray  # (P, E) bool: edges active on the problem
    without: np.ndarray  # (P, E) int64: the sum with that edge alone closed; -1 where it is not active
    necessary_only: np.ndarray  # (P,) int64: the sum with only the necessary edges open
    sufficient: np.ndarray  # (P, E) bool: greedy set: only these open keeps the answer right

    @property
    def necessary(self) -> np.ndarray:
        return self.active & (self.without != self.answer[:, None])

    def save(self, path: Path) -> None:
        np.savez_compressed(path, a=self.a, b=self.b, answer=self.answer, active=self.active,
                            without=self.without, necessary_only=self.necessary_only, sufficient=self.sufficient)

    @classmethod
    def load(cls, path: Path) -> "AblationTable":
        with np.load(path) as data:
            return cls(**{k: data[k] for k in data.files})


@dataclass(frozen=True)
class Explained:
    """What the ablation stage adds to the sparse build."""

    circuit: Circuit  # the sparse circuit with the ablation fields filled in
    explain_bytes: bytes  # explain.onnx
    table: AblationTable
    figure: list  # FigureProblem per FIGURE_PROBLEMS
    seconds: float

    @property
    def manifest_entry(self) -> dict:
        """manifest.json's `explain` field: what the service proves at load."""
        return {"explain": {"file": EXPLAIN_FILE, "sha256": hashlib.sha256(self.explain_bytes).hexdigest(),
                            "input": INPUT_EDGE_MASK, "edges": len(self.circuit.edges),
                            "ablation_table": ABLATION_FILE}}

    def write(self, repository: Path) -> None:
        """explain.onnx and the table beside model.onnx; the figure at the repository root."""
        folder = model_dir(repository, SPARSE_MODEL)
        (folder / EXPLAIN_FILE).write_bytes(self.explain_bytes)
        self.table.save(folder / ABLATION_FILE)
        if self.figure:
            draw_figure(repository / FIGURE_FILE, self.figure, self.circuit.n_layers)


# ---- the two decoders ---------------------------------------------------------------------------

def allowed_gates(circuit: Circuit, mask: torch.Tensor) -> torch.Tensor:
    """(N, layers, heads, T, T) bool: circuit edge e may open where mask[:, e]; every other edge is closed."""
    L, H, T = circuit.n_layers, circuit.n_heads, circuit.n_positions
    flat = torch.tensor([((e.layer * H + e.head) * T + e.query) * T + e.key for e in circuit.edges], dtype=torch.long)
    allowed = torch.zeros(len(mask), L * H * T * T, dtype=torch.bool)
    allowed[:, flat] = mask
    return allowed.view(len(mask), L, H, T, T)


@torch.no_grad()
def torch_sums(model: AdderTransformer, circuit: Circuit, a: np.ndarray, b: np.ndarray, mask: np.ndarray,
               guess: np.ndarray) -> np.ndarray:
    """(N,) greedy-decoded sums with only the masked-in circuit edges allowed to open.

    Decoded by fixed-point iteration from `guess` (N, 5 digits): feeding a guessed answer and taking
    every position's prediction makes one more leading digit greedy's per pass, so at most five
    passes, and a row whose predictions equal what it was fed is done. Most ablations change no
    digit and take one pass, not five growing ones.
    """
    out = np.empty(len(a), np.int64)
    for start in range(0, len(a), TORCH_ROWS):
        part = slice(start, start + TORCH_ROWS)
        seq = sequences(torch.from_numpy(a[part]), torch.from_numpy(b[part]))
        seq[:, ANSWER_START:] = torch.from_numpy(guess[part])
        allowed = allowed_gates(circuit, torch.from_numpy(mask[part]))
        rows = torch.arange(len(seq))
        for _ in range(ANSWER_DIGITS):
            logits = model(seq[rows, :-1], "hard", "hard", allowed[rows].unbind(1))[0]
            pred = logits[:, PREDICT_FROM:].argmax(-1)
            moved = (pred != seq[rows, ANSWER_START:]).any(1)
            seq[rows, ANSWER_START:] = pred
            rows = rows[moved]
            if not len(rows):
                break
        out[part] = seq[:, ANSWER_START:].numpy() @ PLACES
    return out


def onnx_run(sess, a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sums, edges) of explain.onnx in bounded slices (no row: empty arrays, as a circuit with no edge has)."""
    sums, edges = [np.empty(0, np.int64)], [np.empty((0, mask.shape[1]), bool)]
    for start in range(0, len(a), ORT_ROWS):
        part = slice(start, start + ORT_ROWS)
        s, _, e = sess.run(None, {INPUT_A: a[part], INPUT_B: b[part], INPUT_EDGE_MASK: mask[part]})
        sums.append(s)
        edges.append(e)
    return np.concatenate(sums), np.concatenate(edges)


def digits_of(sums: np.ndarray) -> np.ndarray:
    return (sums[:, None] // PLACES) % 10


def _agree(what: str, a: np.ndarray, b: np.ndarray, torch_sums_: np.ndarray, onnx_sums: np.ndarray) -> None:
    differ = np.flatnonzero(torch_sums_ != onnx_sums)
    if len(differ):
        i = differ[0]
        raise VerificationError(f"explain.onnx: {what}: ONNX and torch disagree on {len(differ)} of {len(a)} rows, "
                                f"first {a[i]}+{b[i]}: onnx {onnx_sums[i]} torch {torch_sums_[i]}")


# ---- the stage ------------------------------------------------------------------------------------

def explain_sparse(model: AdderTransformer, circuit: Circuit, model_onnx: onnx.ModelProto, domain: Domain,
                   opset: int, base_edges=(), log=print) -> Explained:
    """Build and prove explain.onnx, then the ablation table; raise VerificationError on any gap."""
    start = time.perf_counter()
    explain = compile_model(model, circuit, True, opset, doc=f"sparse-adder {circuit.model} explain",
                            maskable=True).proto.SerializeToString()
    sess = session(explain, threads=torch.get_num_threads())
    a, b = domain.a.numpy(), domain.b.numpy()
    P, E = len(a), len(circuit.edges)
    # all edges open: the same answers and edges as model.onnx on every problem
    answer, active = onnx_run(sess, a, b, np.ones((P, E), bool))
    served = session(model_onnx.SerializeToString(), threads=torch.get_num_threads()).run(
        None, {INPUT_A: a, INPUT_B: b})
    # (verify_build compares model.onnx's edges with the torch model's gates on every problem)
    if not (np.array_equal(answer, served[0]) and np.array_equal(active, served[2])):
        raise VerificationError("explain.onnx with every edge open differs from model.onnx")
    guess = digits_of(answer)

    # one row per (problem, active edge): that edge alone closed
    problem, edge = np.nonzero(active)
    mask = np.ones((len(problem), E), bool)
    mask[np.arange(len(problem)), edge] = False
    onnx_without = onnx_run(sess, a[problem], b[problem], mask)[0]
    torch_without = torch_sums(model, circuit, a[problem], b[problem], mask, guess[problem])
    _agree("single-edge ablation", a[problem], b[problem], torch_without, onnx_without)
    without = np.full((P, E), -1, np.int64)
    without[problem, edge] = onnx_without
    necessary = active & (without != answer[:, None])

    only = onnx_run(sess, a, b, necessary)[0]
    _agree("only the necessary edges open", a, b, torch_sums(model, circuit, a, b, necessary, guess), only)
    sufficient = greedy_sufficient(sess, a, b, active, necessary)
    _agree("greedy sufficient sets", a, b, torch_sums(model, circuit, a, b, sufficient, guess),
           onnx_run(sess, a, b, sufficient)[0])
    table = AblationTable(a, b, answer, active, without, only, sufficient)
    seconds = time.perf_counter() - start
    log(f"ablation: {len(problem)} (problem, edge) rows, torch = ONNX on all; necessary edges per problem "
        f"{necessary.sum(1).mean():.2f}, sufficient {sufficient.sum(1).mean():.2f}; {seconds:.1f} s")
    enriched = ablation_circuit(circuit, table, len(problem))
    figure = [figure_problem(table, circuit, x, y, base_edges) for x, y in FIGURE_PROBLEMS
              if ((a == x) & (b == y)).any()]  # a test's small domain may lack them
    return Explained(enriched, explain, table, figure, seconds)


def greedy_sufficient(sess, a: np.ndarray, b: np.ndarray, active: np.ndarray, necessary: np.ndarray) -> np.ndarray:
    """Start from the active edges; in circuit order, close each unnecessary one if the answer stays right.

    One pass (not a minimum): every edge kept is necessary or was needed when its turn came.
    """
    kept = active.copy()
    for e in range(active.shape[1]):
        rows = np.flatnonzero(kept[:, e] & ~necessary[:, e])
        if not len(rows):
            continue
        trial = kept[rows].copy()
        trial[:, e] = False
        right = onnx_run(sess, a[rows], b[rows], trial)[0] == a[rows] + b[rows]
        kept[rows[right], e] = False
    return kept


def ablation_circuit(circuit: Circuit, table: AblationTable, rows: int) -> Circuit:
    """The circuit with per-edge necessity and per-problem necessary / sufficient statistics."""
    necessary = table.necessary
    changed = (digits_of(np.where(table.without < 0, table.answer[:, None], table.without).ravel())
               .reshape(*necessary.shape, ANSWER_DIGITS) != digits_of(table.answer)[:, None])  # (P, E, 5)
    edges = [replace(edge, necessary=int(necessary[:, e].sum()), changes_digit=changed[:, e].sum(0).tolist())
             for e, edge in enumerate(circuit.edges)]
    carry = has_carry(torch.from_numpy(table.a), torch.from_numpy(table.b))
    right_only = int((table.necessary_only == table.a + table.b).sum())
    return replace(
        circuit, edges=edges,
        necessary_per_problem=NecessaryPerProblem(**vars(problem_stats(torch.from_numpy(necessary.sum(1)), carry)),
                                                  only_these_open_right=right_only),
        sufficient_per_problem=SufficientPerProblem(
            **vars(problem_stats(torch.from_numpy(table.sufficient.sum(1)), carry)),
            method="greedy: from the active edges, close each unnecessary edge in "
                   "circuit order if the answer stays right (one pass, not a minimum)"),
        ablation={"rows": rows, "table": ABLATION_FILE, "torch_equals_onnx": True,
                  "closed_edge": "its gate is 0 at every decode step; edges outside the circuit stay closed"})


def figure_problem(table: AblationTable, circuit: Circuit, a: int, b: int, base_edges) -> FigureProblem:
    i = int(np.flatnonzero((table.a == a) & (table.b == b))[0])
    edges = [(e.layer, e.head, e.query, e.key) for e in circuit.edges]
    active = [edges[e] for e in np.flatnonzero(table.active[i])]
    necessary = {edges[e] for e in np.flatnonzero(table.necessary[i])}
    return FigureProblem(a, b, list(base_edges), active, necessary)


# ---- `python -m export.ablation`: add the stage to an existing repository -----------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m export.ablation", description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = model_dir(args.repository, SPARSE_MODEL)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    circuit = Circuit.from_json((folder / CIRCUIT_FILE).read_text())
    circuit = replace(circuit, necessary_per_problem=None, sufficient_per_problem=None, ablation=None,
                      edges=[replace(e, necessary=None, changes_digit=None) for e in circuit.edges])
    model = load_checkpoint(folder / CHECKPOINT_FILE)
    dense = Circuit.from_json((model_dir(args.repository, DENSE_MODEL) / CIRCUIT_FILE).read_text())
    cfg = manifest["config"]
    domain = make_domain(cfg["seed"], cfg["test_fraction"])
    try:
        explained = explain_sparse(model, circuit, onnx.load(folder / manifest["file"]), domain, manifest["opset"],
                                   sorted(dense.edge_set()))
    except VerificationError as err:
        print(f"ablation failed verification: {err}", file=sys.stderr)
        return 1
    explained.circuit.save(folder / CIRCUIT_FILE)
    (folder / MANIFEST_FILE).write_text(json.dumps({**manifest, **explained.manifest_entry}, indent=1))
    explained.write(args.repository)
    return 0


if __name__ == "__main__":
    sys.exit(main())
