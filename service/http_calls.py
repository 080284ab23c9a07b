"""The HTTP twin of errors.rpc: run a servicer handler for an HTTP request, with gRPC's errors mapped to
HTTP status codes, the same in-flight gauge and request histogram (protocol="http"), deadlines and
client disconnects."""

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
from starlette.requests import Request
from starlette.responses import Response

from service.batcher import Leave
from service.errors import MAX_DETAIL_CHARS, AdderError
from service.metrics import Metrics

log = logging.getLogger(__name__)

# How Triton and KServe (and Google's gRPC <-> HTTP mapping) answer each gRPC status over HTTP.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,  # nginx's "client closed request": nobody is left to read it
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}
JSON = "application/json"


def json_response(body, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status, headers, media_type=JSON)


def error_response(code: grpc.StatusCode, message: str, status: int | None = None) -> Response:
    """KServe v2's error body, {"error": message}, plus the gRPC code name a client can switch on."""
    if len(message) > MAX_DETAIL_CHARS:
        message = message[:MAX_DETAIL_CHARS] + "..."
    return json_response({"error": message, "code": code.name}, status or HTTP_STATUS[code])


class HttpContext:
    """What a servicer handler uses of grpc.ServicerContext: the time left, and callbacks run if the
    client goes away first (the batcher then drops a request still waiting, as for a cancelled RPC).
    Unlike gRPC it knows why a request ended: its callbacks run only for a disconnect (end_reason); a
    timeout_ms that passes is the batcher's own deadline."""

    def __init__(self, timeout: float | None):
        self._expires = None if timeout is None else time.monotonic() + timeout
        self._callbacks: list[Callable[[], None]] = []
        self._ended = False
        self._lock = threading.Lock()  # the handler's thread registers, the event loop ends

    def time_remaining(self) -> float | None:
        return None if self._expires is None else max(0.0, self._expires - time.monotonic())

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if self._ended:
                return False
            self._callbacks.append(callback)
            return True

    def end_reason(self) -> Leave:
        return Leave.CANCELLED

    def end(self) -> None:
        """The client disconnected."""
        with self._lock:
            self._ended = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


def handler_of(servicer, method: str) -> Callable:
    """The servicer's own handler without its gRPC wrapper (errors.rpc): the same code for both protocols."""
    return functools.partial(getattr(type(servicer), method).__wrapped__, servicer)


class HttpCalls:
    """Runs handlers: blocking ones (they wait for the model) on a thread pool, the rest on the event loop."""

    def __init__(self, metrics: Metrics, label_model: Callable[[str], str], threads: int, max_inflight: int):
        self.metrics = metrics
        self.label_model = label_model
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")
        self.max_inflight = max_inflight  # 0: no limit
        self.active = 0  # only touched on the event loop

    async def run(self, http: Request, method: str, model: str, handler: Callable, request, render: Callable,
                  timeout: float | None = None, blocking: bool = False) -> Response:
        """`render(response message) -> Response` for a success; an AdderError becomes its status code."""
        start = time.perf_counter()
        label = self.label_model(model) if model is not None else ""
        code = grpc.StatusCode.OK
        if self.max_inflight and self.active >= self.max_inflight:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            self._observe(method, label, code, start)
            return error_response(code, f"{self.active} requests in progress, the limit is {self.max_inflight} "
                                        "(ADDER_MAX_CONCURRENT_RPCS): retry later")
        self.active += 1
        self.metrics.inflight.inc()
        context = HttpContext(timeout)
        try:
            if blocking:
                result = await self._off_loop(http, handler, request, context)
            else:
                result = handler(request, context)
            return render(result)
        except AdderError as error:
            code = error.code
            log.info("request failed", extra={"fields": {"method": method, "model": label, "code": code.name,
                                                          "protocol": "http"}})
            return error_response(code, str(error))
        except Exception:
            code = grpc.StatusCode.INTERNAL
            log.exception("unexpected error", extra={"fields": {"method": method, "model": label, "protocol": "http"}})
            return error_response(code, "internal error")  # the detail stays in the log
        finally:
            self.active -= 1
            self.metrics.inflight.dec()
            self._observe(method, label, code, start)

    async def _off_loop(self, http: Request, handler: Callable, request, context: HttpContext):
        loop = asyncio.get_running_loop()
        watcher = asyncio.ensure_future(_until_disconnected(http.receive, context))
        try:
            return await loop.run_in_executor(self.executor, handler, request, context)
        finally:
            watcher.cancel()

    def _observe(self, method: str, model: str, code: grpc.StatusCode, start: float) -> None:
        self.metrics.child(self.metrics.request_duration, method, model, code.name, "http").observe(
            time.perf_counter() - start)

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


async def _until_disconnected(receive: Callable[[], Awaitable[dict]], context: HttpContext) -> None:
    """With the body read, the server's next message is http.disconnect: the client went away."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            context.end()
            return
