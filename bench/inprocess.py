"""In-process ONNX Runtime timings: both builds in paired alternating runs (A B A B ...) per batch size."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract import DENSE_MODEL, MODEL_FILE, OPERAND_MAX, OPERAND_MIN, SPARSE_MODEL, model_dir
from bench.stats import scaled, summary
from service.runtime import OnnxModel


@dataclass
class BatchResult:
    batch: int
    pairs: int
    seconds: dict[str, list[float]]  # model -> per-call durations, pair i at index i
    wrong: dict[str, int] = field(default_factory=dict)  # answers != a + b (a build that adds wrong is news)

    def ratios(self) -> np.ndarray:
        """Per-pair dense/sparse time: > 1 means the sparse build was faster in that pair."""
        return np.asarray(self.seconds[DENSE_MODEL]) / np.asarray(self.seconds[SPARSE_MODEL])

    def to_json(self) -> dict:
        models = {name: {"per_call": summary(times), "per_problem": scaled(summary(times), self.batch),
                         "wrong_answers": self.wrong.get(name, 0)} for name, times in self.seconds.items()}
        out = {"batch": self.batch, "pairs": self.pairs, "models": models}
        if DENSE_MODEL in self.seconds and SPARSE_MODEL in self.seconds and self.pairs:
            ratio = summary(self.ratios())
            out["dense_over_sparse"] = {k: ratio[k] for k in ("median", "q1", "q3", "min", "max")}
        return out


def load_models(repository: Path, names: list[str], intra_op_threads: int) -> dict[str, OnnxModel]:
    """The same session settings as the server (service.runtime), so ORT figures compare with gRPC ones."""
    return {name: OnnxModel(model_dir(repository, name) / MODEL_FILE, intra_op_threads) for name in names}


def problems(batch: int, count: int, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """`count` random input blocks of `batch` problems; each pair of runs uses one block for both builds."""
    return [tuple(rng.integers(OPERAND_MIN, OPERAND_MAX + 1, size=(2, batch), dtype=np.int64)) for _ in range(count)]


def paired_runs(models: dict[str, OnnxModel], batch: int, pairs: int, warmup: int, seconds: float,
                rng: np.random.Generator) -> BatchResult:
    """Warm up each build, then alternate builds call by call until `pairs` pairs or `seconds` pass.

    Alternating inside a pair means slow drifts (another process, frequency scaling) hit both builds
    alike, and the per-pair ratio cancels them; the median ratio is the headline figure.
    """
    blocks = problems(batch, 8, rng)
    wrong = {name: 0 for name in models}
    warm_until = time.monotonic() + seconds / 4  # warm-up may not eat the measuring budget
    for i in range(warmup):
        if i and time.monotonic() > warm_until:
            break
        for name, model in models.items():
            a, b = blocks[i % len(blocks)]
            wrong[name] += int(np.count_nonzero(model.run(a, b).sums != a + b))
    times: dict[str, list[float]] = {name: [] for name in models}
    stop = time.monotonic() + seconds
    done = 0
    while done < pairs and (done == 0 or time.monotonic() < stop):
        a, b = blocks[done % len(blocks)]
        for name, model in models.items():
            start = time.perf_counter()
            answers = model.run(a, b)
            times[name].append(time.perf_counter() - start)
            wrong[name] += int(np.count_nonzero(answers.sums != a + b))
        done += 1
    return BatchResult(batch, done, times, wrong)
