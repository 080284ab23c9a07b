"""grpc.health.v1 statuses: liveness, overall readiness, each service and each model."""

import threading

from grpc_health.v1 import health, health_pb2

from service.generated.adder.v1 import adder_pb2
from service.generated.inference import grpc_predict_v2_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

OVERALL = ""  # ready: every model loaded and proven right, not draining
LIVENESS = "liveness"  # the process answers; stays SERVING while draining
SERVICES = (
    adder_pb2.DESCRIPTOR.services_by_name["Adder"].full_name,
    grpc_predict_v2_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name,
)


class Health:
    """Wraps the stock HealthServicer: NOT_SERVING until the models pass, NOT_SERVING again on drain."""

    def __init__(self, models: list[str]):
        self.servicer = health.HealthServicer(experimental_non_blocking=True)
        self._models = list(models)
        self._ready: dict[str, bool] = {m: False for m in self._models}
        self._draining = False
        self._status: dict[str, int] = {}
        self._lock = threading.Lock()  # the loader and the signal handler both change statuses
        self._set(LIVENESS, SERVING)
        for name in (OVERALL, *SERVICES, *self._models):
            self._set(name, NOT_SERVING)

    def _set(self, name: str, status: int) -> None:
        # Only changes: Watch streams send every set(), and a repeated status is noise to a watcher.
        with self._lock:
            if self._status.get(name) != status:
                self._status[name] = status
                self.servicer.set(name, status)

    def model_changed(self, model: str, ready: bool | None) -> None:
        """`ready` None: unloaded on purpose, so no longer part of overall readiness."""
        if self._draining:
            return
        if model not in self._models:  # a model folder added since start-up, loaded by a reload
            self._models.append(model)
        if ready is None:
            self._ready.pop(model, None)
        else:
            self._ready[model] = ready
        self._set(model, SERVING if ready else NOT_SERVING)
        overall = SERVING if self._ready and all(self._ready.values()) else NOT_SERVING
        for name in (OVERALL, *SERVICES):
            self._set(name, overall)

    def drain(self) -> None:
        """Everything but liveness turns NOT_SERVING so load balancers stop sending requests."""
        self._draining = True
        for name in (OVERALL, *SERVICES, *self._models):
            self._set(name, NOT_SERVING)

    def stop(self) -> None:
        # Ends Watch streams and fixes every status at NOT_SERVING.
        self.servicer.enter_graceful_shutdown()
