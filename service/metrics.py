"""Prometheus metrics, created against an injected registry, and the HTTP endpoint that serves them.

With several worker processes (service/supervisor.py) every value lives in prometheus_client's
multiprocess files and the supervisor's scrape adds them up: counters and histograms sum over the
workers; each gauge says how (`multiprocess_mode`, ignored in a single process).
"""

import threading
from wsgiref.simple_server import WSGIServer

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from contract.circuit import Circuit
from contract.manifest import Manifest

# Sub-millisecond resolution: a hot Add is ~1 ms end to end, a batched session.run far less.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 10_000)


class Metrics:
    """Every metric the server exports; one instance per server, so tests use a fresh registry."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self._children: dict = {}
        self.request_duration = Histogram(
            "adder_request_duration_seconds", "Time to answer a request, by method, model, status code (gRPC's "
            "names, HTTP too) and protocol (grpc or http).",
            ["method", "model", "code", "protocol"], buckets=LATENCY_BUCKETS, registry=registry)
        self.inference_duration = Histogram(
            "adder_inference_duration_seconds", "Time of one onnxruntime session.run (one batch).",
            ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.queue_duration = Histogram(
            "adder_queue_duration_seconds", "Time a request waited in the batcher before its batch ran.",
            ["model"], buckets=LATENCY_BUCKETS, registry=registry)
        self.batch_size = Histogram(
            "adder_batch_size", "Rows (problems) per session.run.", ["model"], buckets=BATCH_BUCKETS,
            registry=registry)
        self.inflight = Gauge("adder_inflight_requests", "Requests being handled right now, gRPC and HTTP.",
                              registry=registry, multiprocess_mode="livesum")
        self.answers = Counter(
            "adder_answers_total", "Answers served, checked against a+b as they leave.", ["model", "correct"],
            registry=registry)
        self.model_ready = Gauge(
            "adder_model_ready", "1 when the model passed its integrity check and self-test (in every worker).",
            ["model"], registry=registry, multiprocess_mode="livemin")
        self.attention_edges = Gauge(
            "adder_attention_edges", "Distinct attention edges the model uses over the whole domain.", ["model"],
            registry=registry, multiprocess_mode="livemostrecent")
        self.edges_per_problem = Gauge(
            "adder_attention_edges_per_problem", "Mean attention edges active for one problem.", ["model"],
            registry=registry, multiprocess_mode="livemostrecent")
        self.edge_density = Gauge(
            "adder_attention_edge_density", "Mean active edges per problem / possible edges per problem.",
            ["model"], registry=registry, multiprocess_mode="livemostrecent")
        self.parameters = Gauge(
            "adder_parameters", "Model parameters, total and kept after sparsification.", ["model", "kind"],
            registry=registry, multiprocess_mode="livemostrecent")
        # A gauge, not an Info (Info values do not reach a multiprocess scrape): 1 on the version served.
        self.model_info = Gauge(
            "adder_model_info", "Version and sha256 of each model served (1; 0: replaced by a reload).",
            ["model", "version", "sha256"], registry=registry, multiprocess_mode="livemostrecent")
        self._described: dict[str, tuple[str, str]] = {}  # model -> its (version, sha256) in model_info
        self.reloads = Counter(
            "adder_model_reloads_total", "Model (re)loads after start-up (SIGHUP, repository RPCs), by result: "
            "loaded, unchanged, refused (bad new version, old one kept), failed, unloaded.", ["model", "result"],
            registry=registry)

    def describe_model(self, name: str, version: str, sha256: str, manifest: Manifest, circuit: Circuit) -> None:
        """Publish what a model is (version, hash, sizes, sparsity); called once it is read."""
        before = self._described.get(name)
        if before is not None and before != (version, sha256):
            # 0 first: a multiprocess scrape keeps a removed series' last value
            self.model_info.labels(name, *before).set(0)
            self.model_info.remove(name, *before)
        self._described[name] = (version, sha256)
        self.model_info.labels(name, version, sha256).set(1)
        self.model_ready.labels(name).set(0)
        self.attention_edges.labels(name).set(len(circuit.edges))
        self.edges_per_problem.labels(name).set(circuit.edges_per_problem.mean)
        self.edge_density.labels(name).set(circuit.density)
        self.parameters.labels(name, "total").set(manifest.parameters.total)
        self.parameters.labels(name, "kept").set(manifest.parameters.kept)

    def count_answers(self, model: str, a: np.ndarray, b: np.ndarray, sums: np.ndarray) -> None:
        right = int(sums[0] == a[0] + b[0]) if len(sums) == 1 else int(np.count_nonzero(sums == a + b))
        if right:
            self.child(self.answers, model, "true").inc(right)
        if right < len(sums):
            self.child(self.answers, model, "false").inc(len(sums) - right)

    def child(self, metric, *labels: str):
        """metric.labels(*labels), looked up once: labels() takes a lock and builds a key on every call."""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


class MetricsEndpoint:
    """The /metrics HTTP server on its own port (Triton's 8002), stopped with the gRPC server."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int):
        self._httpd: WSGIServer
        self._thread: threading.Thread
        self._httpd, self._thread = start_http_server(port, addr=host, registry=registry)
        self.port = self._httpd.server_port

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
