"""The models being served: load each one, prove it right (sha256 + all 10,000 answers), route requests to it.

A reload (SIGHUP, RepositoryModelLoad) loads a model's newest version beside the one serving and swaps
it in only once it has passed the same checks; requests already holding the old version finish on it.
"""

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contract import DEFAULT_MODEL
from service.batcher import Batcher, Watch
from service.config import Config
from service.errors import FailedPrecondition, NotFound, Unavailable, shown
from service.explain import Explainer, load_explain_graph
from service.metrics import Metrics
from service.repository import ModelFiles, RepositoryError, discover, read_model, verify_sha256
from service.runtime import Answers, EdgeKey, OnnxModel, self_test

log = logging.getLogger(__name__)


class ModelState(enum.StrEnum):
    """Where a served model is (ListModels' `state`, RepositoryIndex's reason); the value is the wire string."""

    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"  # its files, hash, graph or self-test failed: the reason says which
    UNLOADED = "UNLOADED"  # unloaded on purpose (RepositoryModelUnload)


class ReloadResult(enum.StrEnum):
    """What one reload did to a model; the value is the `result` label of adder_model_reloads_total."""

    LOADED = "loaded"  # a new version passed every check and serves now
    UNCHANGED = "unchanged"  # its files did not change
    REFUSED = "refused"  # a new version failed its checks; the serving one stays
    FAILED = "failed"  # it failed its checks and nothing served before
    UNLOADED = "unloaded"  # RepositoryModelUnload


_REASON_CHARS = 500


@dataclass
class ServedModel:
    name: str
    version: str
    state: ModelState = ModelState.LOADING
    reason: str = ""
    files: ModelFiles | None = None
    runtime: OnnxModel | None = None
    batcher: Batcher | None = None
    edges: tuple[EdgeKey, ...] = ()  # circuit edges, the column order of the `edges` output
    self_test_correct: int = 0
    explainer: Explainer | None = None  # explain.onnx and its own batcher (sparse builds that have one)
    refused: tuple[str, str] | None = None  # (version, reason) of the last new version a reload refused

    @property
    def ready(self) -> bool:
        return self.state == ModelState.READY


class ModelRegistry:
    """Owns every ServedModel; `on_change(name, ready)` tells health about each state change (ready None:
    unloaded on purpose, no longer part of overall readiness)."""

    def __init__(self, config: Config, metrics: Metrics, on_change: Callable[[str, bool | None], None]):
        self._config = config
        self._metrics = metrics
        self._on_change = on_change
        self._reloading = threading.Lock()  # one load/reload/unload at a time (start-up, SIGHUP, RPCs)
        self.draining = False
        self.models = {name: ServedModel(name, version) for name, version in discover(Path(config.model_repository))}
        # A single-model repository (k8s dense-only overlay) answers requests that name no model.
        self.default = DEFAULT_MODEL if DEFAULT_MODEL in self.models else next(iter(self.models))

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def all_ready(self) -> bool:
        loaded = [m for m in self.models.values() if m.state != ModelState.UNLOADED]
        return bool(loaded) and all(m.ready for m in loaded)

    def load_all(self) -> None:
        """Load every model in turn; a model that fails stays FAILED and the others still load."""
        with self._reloading:
            for name, model in list(self.models.items()):
                self._install(self._prepare(name, model.version))

    def reload(self, names: list[str] | None = None) -> list["ReloadOutcome"]:
        """Load the newest version of `names` (None: every model in the repository) beside what serves.

        A candidate that passes every check replaces the model; one that fails leaves a serving model
        serving (REFUSED) and only replaces a model that was not serving anyway (FAILED). A model whose
        files did not change is left alone (UNCHANGED). Raises NotFound for a name not in the repository.
        """
        with self._reloading:
            if self.draining:
                raise Unavailable("server is shutting down; no reloads")
            try:
                found = dict(discover(Path(self._config.model_repository)))
            except RepositoryError as error:  # the folder is gone or empty: keep serving what is loaded
                raise FailedPrecondition(f"cannot reload: {error}") from None
            for name in names or []:
                if name not in found:
                    raise NotFound(f"model {name!r} not in the repository; models there: {', '.join(found)}")
            outcomes = [self._reload_one(name, found[name]) for name in (names or found)]
        for outcome in outcomes:
            self._metrics.reloads.labels(outcome.model, outcome.result).inc()
            level = logging.WARNING if outcome.result in (ReloadResult.REFUSED, ReloadResult.FAILED) else logging.INFO
            log.log(level, "model reload", extra={"fields": vars(outcome)})
        return outcomes

    def unload(self, name: str) -> "ReloadOutcome":
        """Stop serving `name`: new requests UNAVAILABLE, requests already running finish."""
        with self._reloading:
            current = self.lookup(name)
            if current.state == ModelState.LOADING:
                raise FailedPrecondition(f"model {current.name} is still loading")
            self._publish(ServedModel(current.name, current.version, ModelState.UNLOADED,
                                      "unloaded by RepositoryModelUnload"))
            self._metrics.model_ready.labels(current.name).set(0)
            self._on_change(current.name, None)
        outcome = ReloadOutcome(current.name, current.version, ReloadResult.UNLOADED)
        self._metrics.reloads.labels(current.name, ReloadResult.UNLOADED).inc()
        log.info("model unloaded", extra={"fields": vars(outcome)})
        return outcome

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
            raise NotFound(f"model {shown(name)} not found; models: {', '.join(self.models)}")
        if version and version != model.version:
            raise NotFound(f"model {model.name} has no version {shown(version)}; versions: {model.version}")
        return model

    def label(self, name: str) -> str:
        """A bounded metric label: the model's name, or "unknown" for a name we do not serve."""
        name = name or self.default
        return name if name in self.models else "unknown"

    def infer(self, model: ServedModel, a: np.ndarray, b: np.ndarray, timeout: float | None,
              watch: Watch | None = None) -> Answers:
        """Answer rows through the model's batcher and count right and wrong answers.

        `timeout`: the RPC's time left; `timeout` and `watch`: see Batcher.infer.
        """
        answers = model.batcher.infer(a, b, timeout, watch)
        self._metrics.count_answers(model.name, a, b, answers.sums)
        return answers

    def drain(self) -> None:
        self.draining = True
        for model in self.models.values():
            for batcher in _batchers(model):
                batcher.drain()

    def close(self) -> None:
        for model in self.models.values():
            for batcher in _batchers(model):
                batcher.close()

    def index(self) -> list[tuple[str, str, str, str]]:
        """(name, version, state, reason) of every model served, every version a reload refused, and
        every model folder in the repository not loaded yet (state "")."""
        rows = []
        for model in list(self.models.values()):
            rows.append((model.name, model.version, model.state, model.reason))
            if model.refused is not None and model.refused[0] != model.version:
                rows.append((model.name, model.refused[0], ModelState.FAILED, model.refused[1]))
        try:
            found = discover(Path(self._config.model_repository))
        except RepositoryError:
            found = []
        rows += [(name, version, "", "in the repository, not loaded") for name, version in found
                 if name not in self.models]
        return rows

    def _reload_one(self, name: str, version: str) -> "ReloadOutcome":
        current = self.models.get(name)
        if current is not None and current.ready and current.version == version and self._same_files(current):
            return ReloadOutcome(name, version, ReloadResult.UNCHANGED)
        candidate = self._prepare(name, version)
        if candidate.ready or current is None or not current.ready:
            self._install(candidate)
            result = ReloadResult.LOADED if candidate.ready else ReloadResult.FAILED
            return ReloadOutcome(name, version, result, candidate.reason)
        current.refused = (version, candidate.reason)
        return ReloadOutcome(name, version, ReloadResult.REFUSED,
                             f"{candidate.reason}; still serving version {current.version}")

    def _same_files(self, model: ServedModel) -> bool:
        """Whether the files on disk are what `model` serves (manifest, circuit, ONNX bytes)."""
        try:
            files = read_model(Path(self._config.model_repository), model.name, model.version)
        except RepositoryError:
            return False
        return (files.sha256, files.manifest, files.circuit) == (model.files.sha256, model.files.manifest,
                                                                 model.files.circuit)

    def _prepare(self, name: str, version: str) -> ServedModel:
        """A new ServedModel for one version, READY once proven right or FAILED with a one-line reason.

        It touches nothing that serves: _install publishes it.
        """
        start = time.perf_counter()
        model = ServedModel(name, version)
        try:
            model.files = files = read_model(Path(self._config.model_repository), name, version)
            verify_sha256(files)
            model.edges = tuple(files.circuit.edge_tuples())
            model.runtime = OnnxModel(files.onnx_path, self._config.intra_op_threads)
            result = self_test(model.runtime, len(model.edges))
            model.self_test_correct = result.correct
            if not result.passed:
                raise RepositoryError(f"self-test failed: {result.correct}/{result.total} right, "
                                      f"first wrong: {result.first_wrong}")
            explain_graph = load_explain_graph(files, len(model.edges), model.runtime, self._config.intra_op_threads)
        except Exception as error:  # any failure (files, hash, ORT refusing the graph, self-test) = FAILED
            model.state, model.reason, model.runtime = (ModelState.FAILED, _one_line(str(error) or type(error).__name__),
                                                         None)
            log.error("model failed", extra={"fields": {"model": name, "version": version, "reason": model.reason}})
            return model
        model.batcher = self._batcher(name, model.runtime.run)
        if explain_graph is not None:
            model.explainer = Explainer(explain_graph, self._batcher(f"{name}/explain", explain_graph.run),
                                        files.manifest.explain.sha256)
        model.state = ModelState.READY
        manifest = files.manifest
        log.info("model ready", extra={"fields": {
            "model": name, "version": version, "sha256": files.sha256,
            "size_bytes": files.size_bytes, "self_test": f"{result.correct}/{result.total}",
            "parameters": vars(manifest.parameters), "circuit_edges": len(model.edges),
            "density": manifest.edges.density,
            "seconds": round(time.perf_counter() - start, 3)}})
        return model

    def _batcher(self, label: str, run) -> Batcher:
        """A batcher with the configured limits; `label` is its metrics' model label."""
        return Batcher(label, run, self._metrics, self._config.max_batch_size, self._config.max_queue_delay_us / 1e6,
                       adaptive=self._config.queue_delay_policy == "adaptive")

    def _install(self, model: ServedModel) -> None:
        """Publish a prepared model: requests that already hold the previous one finish on it."""
        if model.files is not None:
            files = model.files
            self._metrics.describe_model(model.name, model.version, files.sha256, files.manifest, files.circuit)
        self._publish(model)
        self._metrics.model_ready.labels(model.name).set(1 if model.ready else 0)
        self._on_change(model.name, model.ready)

    def _publish(self, model: ServedModel) -> None:
        # A new dict, not an update: handlers iterating the old one (ListModels, drain) never see it change.
        self.models = {**self.models, model.name: model}


@dataclass(frozen=True)
class ReloadOutcome:
    model: str
    version: str
    result: ReloadResult
    reason: str = ""


def _batchers(model: ServedModel) -> list[Batcher]:
    found = [model.batcher, model.explainer.batcher if model.explainer else None]
    return [b for b in found if b is not None]


def _one_line(text: str) -> str:
    """A reason for a log field, ListModels and a status message: one line, bounded."""
    text = " ".join(text.split())
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS - 3] + "..."
