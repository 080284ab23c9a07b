"""The models being served: load each one, prove it right (sha256 + all 10,000 answers), route requests to it."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import DEFAULT_MODEL
from service.batcher import Batcher
from service.config import Config
from service.errors import NotFound, Unavailable
from service.metrics import Metrics
from service.repository import ModelFiles, RepositoryError, discover, read_model, verify_sha256
from service.runtime import Answers, Edge, OnnxModel, circuit_edges, self_test

log = logging.getLogger(__name__)

LOADING, READY, FAILED = "LOADING", "READY", "FAILED"
_REASON_CHARS = 500
_NO_DEADLINE = 24 * 3600.0


@dataclass
class ServedModel:
    name: str
    version: str
    state: str = LOADING
    reason: str = ""
    files: ModelFiles | None = None
    runtime: OnnxModel | None = None
    batcher: Batcher | None = None
    edges: tuple[Edge, ...] = ()  # circuit edges, the column order of the `edges` output
    self_test_correct: int = 0

    @property
    def ready(self) -> bool:
        return self.state == READY


class ModelRegistry:
    """Owns every ServedModel; `on_change(name, ready)` tells health about each state change."""

    def __init__(self, config: Config, metrics: Metrics, on_change: Callable[[str, bool], None]):
        self._config = config
        self._metrics = metrics
        self._on_change = on_change
        self.draining = False
        self.models = {name: ServedModel(name, version) for name, version in discover(Path(config.model_repository))}
        # A single-model repository (k8s dense-only overlay) answers requests that name no model.
        self.default = DEFAULT_MODEL if DEFAULT_MODEL in self.models else next(iter(self.models))

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def all_ready(self) -> bool:
        return all(m.ready for m in self.models.values())

    def load_all(self) -> None:
        """Load every model in turn; a model that fails stays FAILED and the others still load."""
        for model in self.models.values():
            self._load(model)

    def get(self, name: str, version: str = "") -> ServedModel:
        """The ready model named `name` ("" = adder-sparse, or the only model); raises NotFound or Unavailable."""
        model = self.lookup(name, version)
        if self.draining:
            raise Unavailable("server is shutting down; retry on another replica")
        if not model.ready:
            detail = f": {model.reason}" if model.reason else ""
            raise Unavailable(f"model {model.name} is not ready ({model.state}){detail}")
        return model

    def lookup(self, name: str, version: str = "") -> ServedModel:
        """The model named `name` in whatever state; raises NotFound."""
        model = self.models.get(name or self.default)
        if model is None:
            raise NotFound(f"model {name!r} not found; models: {', '.join(self.models)}")
        if version and version != model.version:
            raise NotFound(f"model {model.name} has no version {version!r}; versions: {model.version}")
        return model

    def label(self, name: str) -> str:
        """A bounded metric label: the model's name, or "unknown" for a name we do not serve."""
        name = name or self.default
        return name if name in self.models else "unknown"

    def infer(self, model: ServedModel, a: np.ndarray, b: np.ndarray, timeout: float | None) -> Answers:
        """Answer rows through the model's batcher and count right and wrong answers."""
        if timeout is not None and timeout > _NO_DEADLINE:
            timeout = None  # gRPC reports "no deadline" as a huge number; waits cannot take it
        answers = model.batcher.infer(a, b, timeout)
        self._metrics.count_answers(model.name, a, b, answers.sums)
        return answers

    def drain(self) -> None:
        self.draining = True
        for model in self.models.values():
            if model.batcher is not None:
                model.batcher.drain()

    def close(self) -> None:
        for model in self.models.values():
            if model.batcher is not None:
                model.batcher.close()

    def _load(self, model: ServedModel) -> None:
        start = time.perf_counter()
        repository = Path(self._config.model_repository)
        try:
            model.files = read_model(repository, model.name, model.version)
            files = model.files
            self._metrics.describe_model(model.name, model.version, files.sha256, files.manifest, files.circuit)
            verify_sha256(files)
            model.edges = tuple(circuit_edges(files.circuit))
            model.runtime = OnnxModel(files.onnx_path, self._config.intra_op_threads)
            result = self_test(model.runtime, len(model.edges))
            model.self_test_correct = result.correct
            if not result.passed:
                raise RepositoryError(f"self-test failed: {result.correct}/{result.total} right, "
                                      f"first wrong: {result.first_wrong}")
        except Exception as error:  # any failure (files, hash, ORT refusing the graph, self-test) = FAILED
            model.state, model.reason = FAILED, _one_line(str(error) or type(error).__name__)
            log.error("model failed", extra={"fields": {"model": model.name, "version": model.version,
                                                        "reason": model.reason}})
            self._on_change(model.name, False)
            return
        model.batcher = Batcher(model.name, model.runtime.run, self._metrics, self._config.max_batch_size,
                                self._config.max_queue_delay_us / 1e6,
                                adaptive=self._config.queue_delay_policy == "adaptive")
        model.state = READY
        self._metrics.model_ready.labels(model.name).set(1)
        manifest, circuit = model.files.manifest, model.files.circuit
        log.info("model ready", extra={"fields": {
            "model": model.name, "version": model.version, "sha256": model.files.sha256,
            "size_bytes": model.files.size_bytes, "self_test": f"{result.correct}/{result.total}",
            "parameters": manifest.get("parameters", {}), "circuit_edges": len(model.edges),
            "density": manifest.get("edges", {}).get("density", circuit.get("density")),
            "seconds": round(time.perf_counter() - start, 3)}})
        self._on_change(model.name, True)


def _one_line(text: str) -> str:
    """A reason for a log field, ListModels and a status message: one line, bounded."""
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."
