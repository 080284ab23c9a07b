"""The export pipeline: train -> sparsify -> circuit -> compile -> verify -> repository, timed."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from contract import DENSE_MODEL, INPUT_A, INPUT_B, SPARSE_MODEL
from export.ablation import explain_sparse
from export.circuit import extract_circuit
from export.commit import commit
from export.compile import compile_model
from export.config import ExportConfig
from export.fingerprint import FINGERPRINT_FILE, export_fingerprint
from export.prune import prune_neurons
from export.repository import write_build
from export.sparsify import SparsificationError, sparsify
from export.staging import staged_repository
from export.task import PREDICT_FROM, N_POSITIONS, make_domain
from export.train import train_or_reuse_base
from export.verify import session, verify_build

BASE_CACHE_FILE = ".base-cache.pt"  # the trained base model, reused while its code and settings are unchanged


@dataclass
class ExportReport:
    seconds: dict = field(default_factory=dict)
    manifests: dict = field(default_factory=dict)
    latency_ms: dict = field(default_factory=dict)  # (model, batch) -> median ms per call


class Stopwatch:
    def __init__(self, report: ExportReport):
        self.report, self.last = report, time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.report.seconds[stage] = round(now - self.last, 2)
        self.last = now


def median_latency_ms(model_bytes: bytes, batch: int, calls: int) -> float:
    """In-process ORT time per call (one intra-op thread), after warm-up."""
    sess = session(model_bytes)
    feed = {INPUT_A: np.arange(batch, dtype=np.int64) % 100, INPUT_B: np.arange(batch, dtype=np.int64) % 97}
    for _ in range(5):
        sess.run(None, feed)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def check_neuron_target(cfg: ExportConfig, kept: list[int]) -> None:
    """The sparse build keeps at most the configured fraction of MLP neurons, or the export fails."""
    fraction = sum(kept) / (cfg.model.d_mlp * len(kept))
    if fraction > cfg.sparsify.target_neuron_fraction:
        raise SparsificationError(f"the sparse model keeps {fraction:.1%} of MLP neurons {kept}, over the "
                                  f"target {cfg.sparsify.target_neuron_fraction:.0%}")


def run_export(cfg: ExportConfig, repository: Path, progress: bool = True, log=print) -> ExportReport:
    """Build and prove both builds into a staging folder that replaces `repository` only when
    complete; raise SparsificationError or VerificationError (repository untouched) otherwise."""
    with staged_repository(repository, keep=(BASE_CACHE_FILE,)) as staging:
        report = build_repository(cfg, staging, progress, log)
        # written last: a repository without it is incomplete, hence stale
        (staging / FINGERPRINT_FILE).write_text(export_fingerprint(cfg) + "\n")
    return report


def build_repository(cfg: ExportConfig, repository: Path, progress: bool, log) -> ExportReport:
    """Every stage of the export, written into `repository` (a fresh staging folder)."""
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    report = ExportReport()
    clock = Stopwatch(report)
    domain = make_domain(cfg.seed, cfg.test_fraction)
    base = train_or_reuse_base(cfg, domain, repository / BASE_CACHE_FILE, progress)
    log(f"base: {base.steps} steps, exact train {base.train_accuracy:.4f} test {base.test_accuracy:.4f}, CE {base.final_ce:.2e}")
    clock.lap("train base")
    sparse = sparsify(cfg, domain, base.model, base.final_ce, progress)
    if cfg.sparsify.prune_neurons:
        sparse.neurons_kept = prune_neurons(sparse.model, domain.tokens)
    check_neuron_target(cfg, sparse.neurons_kept)
    log(f"sparse: best step {sparse.best_step} of {sparse.steps}, edge density {sparse.edge_density:.4%}, "
        f"neurons {sparse.neurons_kept}")
    clock.lap("sparsify")
    # the served gate rule, exact again, no denser than the attention phase reached
    committed = commit(cfg, domain, sparse.model, base.final_ce, sparse.attention_density(), progress)
    sparse.model = committed.model
    log(f"commit ({committed.gate_rule}): {committed.start_correct} -> {committed.correct} exact in {committed.steps} "
        f"steps, edge density {committed.start_edge_density:.4%} -> {committed.edge_density:.4%}")
    clock.lap("commit")
    predicting = range(PREDICT_FROM, N_POSITIONS)
    builds = [(DENSE_MODEL, base.model, False), (SPARSE_MODEL, sparse.model, True)]
    circuits = {name: extract_circuit(m, name, domain.a, domain.b, gated, predicting) for name, m, gated in builds}
    clock.lap("circuit")
    compiled = {name: compile_model(m, circuits[name], gated, cfg.opset, doc=f"sparse-adder {name}")
                for name, m, gated in builds}
    clock.lap("compile")
    # proven before the ablation: a build that answers wrong fails in seconds, not after minutes of ablation
    verified = {name: verify_build(name, compiled[name].proto.SerializeToString(), m, circuits[name], domain, gated,
                                   cfg.sparsify.require_exact)
                for name, m, gated in builds}
    clock.lap("verify")
    explained = explain_sparse(sparse.model, circuits[SPARSE_MODEL], compiled[SPARSE_MODEL].proto, domain,
                               cfg.opset, sorted(circuits[DENSE_MODEL].edge_set()), log)
    circuits[SPARSE_MODEL] = explained.circuit
    clock.lap("ablation")
    training = {"base_steps": base.steps, "base_final_ce": base.final_ce, "sparse_steps": sparse.steps,
                "sparse_best_step": sparse.best_step, "tau": sparse.tau, "sparse_rounds": sparse.rounds,
                "seconds": {"base": round(base.seconds, 1), "sparsify": round(sparse.seconds, 1)},
                "sparsify_history": sparse.history, "commit": committed.manifest_entry()}
    for name, m, gated in builds:
        v = verified[name]
        extra = {"config": cfg.to_dict(), "seed": cfg.seed, "training": training,
                 "accuracy": {"correct": v.correct, "total": v.total, "exact_match": v.correct / v.total,
                              "train": v.train_accuracy, "test": v.test_accuracy,
                              "edge_output_mismatches": v.edge_mismatches}}
        extra |= explained.manifest_entry if gated else {}
        report.manifests[name] = write_build(repository, m, gated, circuits[name], compiled[name], extra)
    explained.write(repository)  # explain.onnx, the ablation table and the figure
    clock.lap("write")
    for name in (DENSE_MODEL, SPARSE_MODEL):
        data = compiled[name].proto.SerializeToString()
        for batch, calls in ((1, 300), (1024, 20)):
            report.latency_ms[(name, batch)] = median_latency_ms(data, batch, calls)
    clock.lap("latency")
    return report

