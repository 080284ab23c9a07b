"""The one place that turns exceptions into gRPC status codes, and times every RPC for the metrics."""

import functools
import logging
import time
from collections.abc import Callable

import grpc

log = logging.getLogger(__name__)

# grpc sends the message in a trailer, percent-encoded, and a peer drops trailers past 16 KiB: a message
# echoing a huge client string would reach the client as "Stream removed" instead of its status.
MAX_DETAIL_CHARS = 512
_SHOWN_CHARS = 40


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


def rpc(method: str, model_of: Callable[[object], str] | None = None) -> Callable:
    """Decorate a servicer method: map errors to status codes, count in-flight, time it by code.

    The servicer must have `metrics` (service.metrics.Metrics) and `label_model(name) -> str`, which
    keeps label values bounded (an unknown model name is not a label value).
    """

    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(self, request, context):
            start = time.perf_counter()
            model = self.label_model(model_of(request)) if model_of else ""
            code = grpc.StatusCode.OK
            self.metrics.inflight.inc()
            try:
                return handler(self, request, context)
            except AdderError as error:
                code = error.code
                # Not the message: it quotes what the client sent, and request data stays out of the log.
                log.info("request failed", extra={"fields": {"method": method, "model": model, "code": code.name}})
                detail = str(error)
                context.abort(code, detail if len(detail) <= MAX_DETAIL_CHARS else detail[:MAX_DETAIL_CHARS] + "...")
            except Exception:
                code = grpc.StatusCode.INTERNAL
                log.exception("unexpected error", extra={"fields": {"method": method, "model": model}})
                context.abort(code, "internal error")  # the detail stays in the log
            finally:
                self.metrics.inflight.dec()
                self.metrics.child(self.metrics.request_duration, method, model, code.name, "grpc").observe(
                    time.perf_counter() - start)

        return wrapper

    return decorate
