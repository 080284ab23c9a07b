"""Serve on every core: N worker processes on one set of ports, one metrics scrape, signals passed on.

Python runs one thread at a time, so one server process uses about one core. The supervisor reserves
the gRPC and HTTP ports (bound, never listening, SO_REUSEPORT), starts N copies of the server on them
(`python -m service` as worker i; each loads and proves its own models) and the kernel spreads new
connections over the workers. Workers write their metrics to prometheus_client's multiprocess files;
the supervisor serves the one /metrics that adds them up. SIGHUP and SIGTERM go to every worker; the
supervisor logs the server's lifecycle ("listening", "models loaded", "reloaded", "draining",
"stopped") once for all, and starts a worker again if one dies.
"""

import dataclasses
import logging
import os
import queue
import signal
import threading
import time

from service.config import Config
from service.ports import reserve_port
from service.shared_metrics import SharedMetrics
from service.worker_link import FAILED, LOADED, RELOADED, STOPPED
from service.worker_pool import EXITED, WorkerEvent, WorkerPool

log = logging.getLogger(__name__)
_EXIT_MARGIN_S = 15.0  # past the grace period: a worker's own stop releases its ports, models, threads
_MAX_RESTART_DELAY_S = 30.0


class Supervisor:
    def __init__(self, config: Config, workers: int):
        self.config = config
        self.workers = workers
        self._stop, self._reload = threading.Event(), threading.Event()
        self._grpc_socket = self._http_socket = None  # the reserved ports, closed at exit
        self.metrics: SharedMetrics | None = None
        self._pool: WorkerPool | None = None
        self._loaded: dict[int, dict] = {}  # worker -> its LOADED fields (the first start)
        self._reloading: dict[int, dict] = {}  # live worker -> its RELOADED results (None: not yet)
        self._restart_at: dict[int, float] = {}  # dead worker -> when to start it again
        self._crashes: dict[int, int] = {}  # worker -> exits in a row without serving (the restart delay)
        self._exited: set[int] = set()  # pids whose EXITED event was handled
        self._unfinished = 0

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the process exit code (1: a worker could not start)."""
        log.info("starting", extra={"fields": {"workers": self.workers,
                                               "config": {k: str(v) for k, v in vars(self.config).items()}}})
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda number, frame: self._stop.set())
        signal.signal(signal.SIGHUP, lambda number, frame: self._reload.set())
        try:
            worker_config = self._prepare()
            self._pool = WorkerPool(worker_config, {**os.environ, **self.metrics.worker_environ()})
            failure = self._start_workers()
            if failure:
                self._pool.signal_all(signal.SIGTERM)
                self._pool.wait_all(self.config.grace_seconds + _EXIT_MARGIN_S)
                log.error("cannot start", extra={"fields": {"reason": failure}})
                return 1
            if not self._stop.is_set():
                self._announce()
                self._supervise()
            return self._shut_down()
        except OSError as error:
            log.error("cannot start", extra={"fields": {"reason": str(error)}})
            return 1
        finally:
            self._clean_up()

    def _prepare(self) -> Config:
        """Reserve the ports, set up the metrics files and endpoint; the config each worker runs."""
        host = self.config.host
        self._grpc_socket = reserve_port(host, self.config.grpc_port, "gRPC")
        if self.config.http_port >= 0:
            self._http_socket = reserve_port(host, self.config.http_port, "HTTP")
        self.metrics = SharedMetrics(lambda: len(self._pool.live()) if self._pool else 0)
        if self.config.metrics_port >= 0:
            self.metrics.serve(self.config.metrics_host or host, self.config.metrics_port)
        return dataclasses.replace(self.config, workers=1, grpc_port=self._port(self._grpc_socket),
                                   http_port=self._port(self._http_socket), metrics_port=-1)

    def _start_workers(self) -> str:
        """Start every worker and wait until each serves; the reason one could not ("" if all do)."""
        for index in range(self.workers):
            self._pool.start(index)
        while len(self._loaded) < self.workers and not self._stop.is_set():
            try:
                event = self._pool.events.get(timeout=0.5)
            except queue.Empty:
                continue
            if event.event == LOADED:
                self._loaded[event.worker] = event.fields
            elif event.event == FAILED:
                return event.fields.get("reason", "")
            elif event.event == EXITED:
                return f"worker {event.worker} exited with code {event.fields['code']} before serving"
        return ""

    def _announce(self) -> None:
        first = self._loaded[0]
        tls = "mutual" if self.config.tls_client_ca else "on" if self.config.tls_cert else "off"
        log.info("listening", extra={"fields": {
            "host": self.config.host, "grpc_port": self._port(self._grpc_socket),
            "http_port": self._port(self._http_socket) if self._http_socket else None,
            "metrics_port": self.metrics.port, "tls": tls,
            "workers": self.workers, "pids": [self._pool.processes[i].pid for i in range(self.workers)],
            "metrics_dir": str(self.metrics.folder)}})
        log.info("models loaded", extra={"fields": {"ready": first["ready"], "failed": first["failed"]}})

    def _supervise(self) -> None:
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                log.info("SIGHUP received, reloading the model repository")
                self._reloading = {index: None for index in self._pool.live()}
                self._pool.signal_all(signal.SIGHUP)
            self._restart_due()
            try:
                self._handle(self._pool.events.get(timeout=0.5))
            except queue.Empty:
                continue

    def _handle(self, event: WorkerEvent) -> None:
        if event.event == RELOADED and event.worker in self._reloading:
            self._reloading[event.worker] = event.fields.get("results", {})
            self._log_reload_if_done()
        elif event.event == LOADED:
            self._crashes[event.worker] = 0
            log.info("worker restarted", extra={"fields": {"worker": event.worker, "pid": event.pid}})
        elif event.event == EXITED:
            self._exited.add(event.pid)
            self.metrics.worker_exited(event.pid)
            crashes = self._crashes.get(event.worker, 0)
            delay = min(2.0 ** crashes - 1, _MAX_RESTART_DELAY_S)
            self._crashes[event.worker] = crashes + 1
            self._restart_at[event.worker] = time.monotonic() + delay
            self._reloading.pop(event.worker, None)
            self._log_reload_if_done()
            log.error("worker exited", extra={"fields": {"worker": event.worker, "pid": event.pid,
                                                         "code": event.fields["code"], "restart_in_s": delay}})

    def _log_reload_if_done(self) -> None:
        if not self._reloading or any(results is None for results in self._reloading.values()):
            return
        log.info("reloaded", extra={"fields": {"results": merged_results(list(self._reloading.values())),
                                               "workers": len(self._reloading)}})
        self._reloading = {}

    def _restart_due(self) -> None:
        now = time.monotonic()
        for index, when in list(self._restart_at.items()):
            if now >= when:
                del self._restart_at[index]
                self._pool.start(index)

    def _shut_down(self) -> int:
        grace = self.config.grace_seconds
        start = time.perf_counter()
        log.info("signal received, shutting down", extra={"fields": {"grace_seconds": grace}})
        log.info("draining", extra={"fields": {"inflight": self.metrics.inflight()}})
        self._pool.signal_all(signal.SIGTERM)
        killed = self._pool.wait_all(grace + _EXIT_MARGIN_S)
        self._collect_stops()
        log.info("stopped", extra={"fields": {"seconds": round(time.perf_counter() - start, 3),
                                              "unfinished": self._unfinished, "killed_workers": killed}})
        return 0

    def _collect_stops(self) -> None:
        """Every worker has exited: read what is left of their events, adding up what each left unfinished."""
        pending = {process.pid for process in self._pool.processes.values()} - self._exited
        while pending:
            try:
                event = self._pool.events.get(timeout=_EXIT_MARGIN_S)
            except queue.Empty:  # a listener thread that never saw its pipe close: nothing more to learn
                return
            if event.event == STOPPED:
                self._unfinished += int(event.fields.get("unfinished", 0))
            elif event.event == EXITED:
                pending.discard(event.pid)

    def _clean_up(self) -> None:
        if self.metrics:
            self.metrics.close()
        for reserved in (self._grpc_socket, self._http_socket):
            if reserved:
                reserved.close()

    @staticmethod
    def _port(reserved) -> int:
        """The port a reserved socket holds; -1 (off) for none."""
        return reserved.getsockname()[1] if reserved else -1


def merged_results(by_worker: list[dict[str, str]]) -> dict[str, str]:
    """Each model's reload result, the same in every worker, else "mixed" (their own lines say which)."""
    merged: dict[str, str] = {}
    for results in by_worker:
        for model, result in results.items():
            merged[model] = result if merged.get(model, result) == result else "mixed"
    return merged
