"""The workers' metrics in one scrape: prometheus_client's multiprocess files, added up on /metrics."""

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, multiprocess
from prometheus_client.core import GaugeMetricFamily

from service.metrics import MetricsEndpoint

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # where a worker's prometheus_client writes its values


class SharedMetrics:
    """The folder the workers write to, and the supervisor's registry and endpoint that read it.

    Counters and histograms sum over the workers (the dead ones' counts included); each gauge says how
    it adds up (service/metrics.py). `live_workers` feeds adder_workers.
    """

    def __init__(self, live_workers: Callable[[], int]):
        given = os.environ.get(MULTIPROC_ENV)
        self._own_folder = not given
        self.folder = Path(given) if given else Path(tempfile.mkdtemp(prefix="adder-metrics-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*.db"):  # an earlier run's values would add up with ours
            stale.unlink()
        self.registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(self.registry, path=str(self.folder))
        self.registry.register(_WorkersCollector(live_workers))
        self._endpoint: MetricsEndpoint | None = None

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics on host:port (0: a free port); returns the port."""
        self._endpoint = MetricsEndpoint(self.registry, host, port)
        return self._endpoint.port

    @property
    def port(self) -> int | None:
        return self._endpoint.port if self._endpoint else None

    def worker_environ(self) -> dict[str, str]:
        return {MULTIPROC_ENV: str(self.folder)}

    def worker_exited(self, pid: int) -> None:
        """Drop a dead worker's live gauges (its in-flight count, its readiness)."""
        multiprocess.mark_process_dead(pid, str(self.folder))

    def inflight(self) -> float:
        return self.registry.get_sample_value("adder_inflight_requests") or 0.0

    def close(self) -> None:
        if self._endpoint:
            self._endpoint.stop()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)


class _WorkersCollector:
    """adder_workers: worker processes alive right now (a dead one is started again)."""

    def __init__(self, live_workers: Callable[[], int]):
        self._live_workers = live_workers

    def collect(self):
        yield GaugeMetricFamily("adder_workers", "Server worker processes alive (ADDER_WORKERS).",
                                value=self._live_workers())
