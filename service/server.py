"""Build the gRPC server (create_server) and run it with a graceful SIGTERM drain (serve)."""

import logging
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from service import handlers, logs, tls
from service.adder_servicer import AdderServicer
from service.config import Config
from service.generated.adder.v1 import adder_pb2_grpc
from service.generated.inference import grpc_predict_v2_pb2_grpc
from service.health import SERVICES, Health
from service.http_app import HttpApp
from service.http_server import HttpEndpoint
from service.inference_servicer import InferenceServicer
from service.metrics import Metrics, MetricsEndpoint
from service.models import ModelRegistry
from service.repository import RepositoryError
from service.worker_link import FAILED, LOADED, RELOADED, STOPPED, WorkerLink

log = logging.getLogger(__name__)
_LAST_GRACE_SECONDS = 1.0


class AdderServer:
    """The gRPC server, its models, health and metrics endpoint, with an explicit lifecycle:

    start() -> load_models() (health turns SERVING per model) -> drain() (NOT_SERVING, new work
    UNAVAILABLE) -> stop() (in-flight requests finish within the grace period).
    """

    def __init__(self, config: Config, registry: CollectorRegistry | None = None, worker: int | None = None):
        """`worker`: this process is worker number `worker` of a supervisor (service/supervisor.py): it
        binds the ports the supervisor reserved, shared with the other workers (SO_REUSEPORT), and its
        lifecycle log lines say "worker ..." (the supervisor writes the server's own)."""
        self.config = config
        self.worker = worker
        self.metrics = Metrics(registry if registry is not None else CollectorRegistry())
        self.models = ModelRegistry(config, self.metrics, on_change=self._model_changed)
        self.health = Health(self.models.names)
        # A sync thread pool, not grpc.aio: measured slower here (docs/serving-profile.md: Transport).
        # Past max_concurrent_rpcs grpc answers RESOURCE_EXHAUSTED itself; past max_message_bytes too.
        # No interceptor: service/handlers.py builds each method's handler once (decoding, errors, metrics).
        self.grpc = grpc.server(
            ThreadPoolExecutor(max_workers=config.worker_threads, thread_name_prefix="rpc"),
            options=(("grpc.max_receive_message_length", config.max_message_bytes),
                     ("grpc.max_send_message_length", config.max_message_bytes),
                     # Shared only between workers: alone, a port another server holds is an error,
                     # not a silent split of its traffic (gRPC's default on Linux).
                     ("grpc.so_reuseport", int(worker is not None))),
            maximum_concurrent_rpcs=config.max_concurrent_rpcs or None)
        handlers.register(self.grpc, adder_pb2_grpc.add_AdderServicer_to_server,
                          AdderServicer(config, self.models, self.metrics))
        handlers.register(self.grpc, grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
                          InferenceServicer(config, self.models, self.metrics))
        handlers.register(self.grpc, health_pb2_grpc.add_HealthServicer_to_server, self.health.servicer)
        reflection.enable_server_reflection(
            (*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.grpc)
        address = f"{config.host}:{config.grpc_port}"
        credentials = tls.server_credentials(config)
        self.port = (self.grpc.add_secure_port(address, credentials) if credentials
                     else self.grpc.add_insecure_port(address))
        if self.port == 0:
            raise OSError(f"cannot bind gRPC to {config.host}:{config.grpc_port}")
        self.metrics_endpoint: MetricsEndpoint | None = None
        # HTTP/REST (KServe v2 REST, /v1, the explorer) on the same models, batcher and metrics.
        self.http_app: HttpApp | None = None
        self.http: HttpEndpoint | None = None
        if config.http_port >= 0:
            self.http_app = HttpApp(config, self.models, self.metrics)
            self.http = HttpEndpoint(self.http_app.app, config, shared_port=worker is not None)
        self._stopped = threading.Event()

    @property
    def metrics_port(self) -> int | None:
        return self.metrics_endpoint.port if self.metrics_endpoint else None

    @property
    def http_port(self) -> int | None:
        return self.http.port if self.http else None

    def start(self) -> None:
        self.grpc.start()
        if self.http:
            self.http.start()
        if self.config.metrics_port >= 0:
            self.metrics_endpoint = MetricsEndpoint(self.metrics.registry, self.config.metrics_host or self.config.host,
                                                    self.config.metrics_port)
        log.info(self._said("listening"), extra={"fields": {
            "host": self.config.host, "grpc_port": self.port, "http_port": self.http_port,
            "metrics_port": self.metrics_port,
            "tls": "mutual" if self.config.tls_client_ca else "on" if self.config.tls_cert else "off"}})

    def load_models(self) -> tuple[list[str], dict[str, str]]:
        """Load and prove every model; the names of those ready, and the reason of each that failed."""
        self.models.load_all()
        ready = [m.name for m in self.models.models.values() if m.ready]
        failed = {m.name: m.reason for m in self.models.models.values() if not m.ready}
        log.info(self._said("models loaded"), extra={"fields": {"ready": ready, "failed": failed}})
        return ready, failed

    def reload_models(self) -> dict[str, str]:
        """SIGHUP: reload every model in the repository; a bad new version never replaces a serving one.

        Returns each model's result (loaded, unchanged, refused, failed), or {"": "error"}."""
        try:
            return {outcome.model: outcome.result for outcome in self.models.reload()}
        except Exception as error:  # e.g. the repository folder is gone: keep serving what is loaded
            log.error("reload failed", extra={"fields": {"reason": " ".join(str(error).split())}})
            return {"": "error"}

    def drain(self) -> None:
        """Stop taking new work: health NOT_SERVING, new requests UNAVAILABLE, queued batches run now."""
        if not self.models.draining:
            log.info(self._said("draining"), extra={"fields": {"inflight": self._inflight()}})
        self.health.drain()
        self.models.drain()

    def stop(self, grace: float | None = None) -> int:
        """Drain, let in-flight RPCs finish (at most `grace` seconds), then release everything.

        Returns how many requests the grace period did not let finish."""
        if self._stopped.is_set():
            return 0
        grace = self.config.grace_seconds if grace is None else grace
        start = time.perf_counter()
        deadline = time.monotonic() + grace
        self.drain()
        while self._inflight() > 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        unfinished = self._inflight()  # RPCs the grace period did not let finish: grpc cancels them now
        # Left now: health Watch streams, which never end by themselves, and requests already being
        # refused. A short grace for those, not the whole period.
        last_grace = min(_LAST_GRACE_SECONDS, max(0.0, deadline - time.monotonic()))
        stopping = self.grpc.stop(last_grace)
        if self.http:
            self.http.stop(last_grace)
            self.http_app.close()
        stopping.wait()
        self.health.stop()
        self.models.close()
        if self.metrics_endpoint:
            self.metrics_endpoint.stop()
        self._stopped.set()
        log.info(self._said("stopped"), extra={"fields": {"seconds": round(time.perf_counter() - start, 3),
                                                          "unfinished": int(unfinished)}})
        return int(unfinished)

    def _inflight(self) -> float:
        return self.metrics.registry.get_sample_value("adder_inflight_requests") or 0.0

    def _said(self, message: str) -> str:
        """A lifecycle log message: a worker's says "worker ...", the server's own come from its supervisor."""
        return message if self.worker is None else "worker " + message

    def _model_changed(self, name: str, ready: bool | None) -> None:
        self.health.model_changed(name, ready)


def create_server(config: Config, registry: CollectorRegistry | None = None,
                  worker: int | None = None) -> tuple[AdderServer, int]:
    """An unstarted server bound to config.host:config.grpc_port, and the port it got (for port 0)."""
    server = AdderServer(config, registry, worker)
    return server, server.port


def serve(config: Config) -> int:
    """Run one server process until SIGTERM/SIGINT, then drain and exit; returns the exit code.

    A stand-alone server, or worker `WorkerLink.index` of a supervisor (service/supervisor.py, which
    `python -m service` runs instead when there is more than one worker).
    """
    link = WorkerLink.from_environ()
    logs.configure(config.log_level, static_fields={"worker": link.index} if link else None)
    try:
        return _serve_process(config, link)
    finally:
        if link:
            link.close()


def _serve_process(config: Config, link: WorkerLink | None) -> int:
    said = (lambda message: message) if link is None else (lambda message: "worker " + message)
    log.info(said("starting"), extra={"fields": {"config": {k: str(v) for k, v in vars(config).items()}}})
    try:
        server, _ = create_server(config, worker=link.index if link else None)
    except (RepositoryError, OSError) as error:
        return _cannot_start(said, link, str(error))
    stop, reload = threading.Event(), threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, frame: stop.set())
    signal.signal(signal.SIGHUP, lambda number, frame: reload.set())  # the default action would kill us
    if link:  # a worker proves its models before its ports take connections: a restarted one joins ready
        ready, failed = server.load_models()
        if ready:
            server.start()
    else:  # alone, the ports answer (health NOT_SERVING) while the models load
        server.start()
        ready, failed = server.load_models()
    if not ready and not stop.is_set():
        # Nothing to serve: fail fast and visibly (a restart loop) instead of running unready.
        server.stop(grace=0)
        reasons = "; ".join(f"{name}: {reason}" for name, reason in failed.items())
        return _cannot_start(said, link, f"no model passed its checks: {reasons}")
    if link:
        link.send(LOADED, ready=ready, failed=failed)
    while not stop.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        if link and link.orphaned():
            log.warning(said("supervisor gone, shutting down"))
            break
        if reload.is_set():
            reload.clear()
            log.info(said("SIGHUP received, reloading the model repository"))
            results = server.reload_models()
            log.info(said("reloaded"), extra={"fields": {"results": results}})
            if link:
                link.send(RELOADED, results=results)
    log.info(said("signal received, shutting down"), extra={"fields": {"grace_seconds": config.grace_seconds}})
    unfinished = server.stop()
    if link:
        link.send(STOPPED, unfinished=unfinished)
    return 0


def _cannot_start(said, link: WorkerLink | None, reason: str) -> int:
    log.error(said("cannot start"), extra={"fields": {"reason": reason}})
    if link:
        link.send(FAILED, reason=reason)
    return 1
