"""The one place that turns exceptions into gRPC status codes, and times every RPC for the metrics."""

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

log = logging.getLogger(__name__)

# grpc sends the message in a trailer, percent-encoded, and a peer drops trailers past 16 KiB: a message
# echoing a huge client string would reach the client as "Stream removed" instead of its status.
MAX_DETAIL_CHARS = 512
_SHOWN_CHARS = 40
_OK = grpc.StatusCode.OK


def shown(value: str) -> str:
    """A client-supplied string quoted for an error message, cut to a few dozen characters."""
    if len(value) <= _SHOWN_CHARS:
        return repr(value)
    return f"{value[:_SHOWN_CHARS]!r}... ({len(value):,} characters)"


class AdderError(Exception):
    """An error the client caused or can act on; the message is sent to the client as is."""

    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(AdderError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(AdderError):
    code = grpc.StatusCode.NOT_FOUND


class Unavailable(AdderError):
    code = grpc.StatusCode.UNAVAILABLE


class ResourceExhausted(AdderError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(AdderError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(AdderError):
    code = grpc.StatusCode.CANCELLED


class FailedPrecondition(AdderError):
    """The server's state or configuration does not allow it (a bad model version, model control off)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


@dataclass(frozen=True)
class RpcSpec:
    """What errors.rpc records on a servicer method: its metrics label and how to find its model."""

    method: str
    model_of: Callable[[object], str] | None = None


def cut(detail: str) -> str:
    return detail if len(detail) <= MAX_DETAIL_CHARS else detail[:MAX_DETAIL_CHARS] + "..."


def answering(spec: RpcSpec, handler: Callable, servicer) -> Callable:
    """`handle(request, context)` for one servicer method: map errors to status codes, count in-flight,
    time it by model and code. Built once per method (service/handlers.py), so the per-call work is the
    try/finally, two gauge updates and one histogram child found in a dict.

    The servicer must have `metrics` (service.metrics.Metrics) and `label_model(name) -> str`, which
    keeps label values bounded (an unknown model name is not a label value).
    """
    method, model_of, label_model = spec.method, spec.model_of, servicer.label_model
    metrics = servicer.metrics
    inflight, histogram = metrics.inflight, metrics.request_duration
    durations: dict = {}  # (model, code) -> histogram child: labels() takes a lock and builds a key
    clock = time.perf_counter

    def handle(request, context):
        start = clock()
        model = label_model(model_of(request)) if model_of else ""
        code = _OK
        inflight.inc()
        try:
            return handler(servicer, request, context)
        except AdderError as error:
            code = error.code
            # Not the message: it quotes what the client sent, and request data stays out of the log.
            log.info("request failed", extra={"fields": {"method": method, "model": model, "code": code.name}})
            context.abort(code, cut(str(error)))
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unexpected error", extra={"fields": {"method": method, "model": model}})
            context.abort(code, "internal error")  # the detail stays in the log
        finally:
            inflight.dec()
            child = durations.get((model, code))
            if child is None:
                child = durations[(model, code)] = metrics.child(histogram, method, model, code.name, "grpc")
            child.observe(clock() - start)

    return handle


def rpc(method: str, model_of: Callable[[object], str] | None = None) -> Callable:
    """Mark a servicer method as an RPC named `method` for the metrics (`model_of(request)`: its model).

    service/handlers.py builds its gRPC handler once from the mark (`rpc_spec`) and the plain function
    (`__wrapped__`, which HTTP calls too); the wrapper returned here does the same work per call, for
    anything that calls the servicer method directly.
    """
    spec = RpcSpec(method, model_of)

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(self, request, context):
            return answering(spec, handler, self)(request, context)

        wrapper.rpc_spec = spec
        return wrapper

    return decorate
