"""`python -m bench.aioserver`: the same models, servicers and handlers on a grpc.aio server (bench only).

An experiment for choosing the transport on figures (bench.transport, docs/serving-profile.md): the
event loop does the I/O and hands each call to a thread pool (grpc.aio's migration_thread_pool), where
the very handlers service/handlers.py builds for the sync server run unchanged. With --inline they run
on the event loop itself instead (no thread hop, no batching, the loop blocked while the model runs). It takes the server's
flags and writes the log lines service.process.ServerProcess waits for. Not the product: no HTTP
port, no SIGHUP reload, no TLS; SIGTERM stops it after draining.
"""

import asyncio
import logging
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health_pb2_grpc
from prometheus_client import CollectorRegistry

from service import handlers, logs
from service.adder_servicer import AdderServicer
from service.config import parse_args
from service.generated.adder.v1 import adder_pb2_grpc
from service.generated.inference import grpc_predict_v2_pb2_grpc
from service.health import Health
from service.inference_servicer import InferenceServicer
from service.metrics import Metrics, MetricsEndpoint
from service.models import ModelRegistry

log = logging.getLogger("service.server")  # the sync server's logger name: the same log records


class _SyncContext:
    """What the handlers use of grpc.ServicerContext, over grpc.aio's context for thread-pool handlers
    (its add_callback returns nothing and calls back with an argument)."""

    __slots__ = ("_context",)

    def __init__(self, context):
        self._context = context

    def time_remaining(self):
        return self._context.time_remaining()

    def abort(self, code, details):
        self._context.abort(code, details)

    def add_callback(self, callback) -> bool:
        self._context.add_callback(lambda *_: callback())
        return True


class _Aborted(Exception):
    """The inline variant's abort: grpc.aio's is a coroutine, awaited once the handler has returned."""


class _InlineContext(_SyncContext):
    __slots__ = ()

    def abort(self, code, details):
        raise _Aborted(code, details)


def _adapted(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if handler.request_streaming or handler.response_streaming:
        return handler
    behavior = handler.unary_unary
    return grpc.unary_unary_rpc_method_handler(lambda request, context: behavior(request, _SyncContext(context)),
                                               handler.request_deserializer, handler.response_serializer)


def _inline(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """The handler run on the event loop itself: no thread hop, but the loop waits for the model (so no
    two requests ever meet in the batcher) and a large request stalls every other RPC meanwhile."""
    if handler.request_streaming or handler.response_streaming:
        return handler
    behavior = handler.unary_unary

    async def handle(request, context):
        try:
            return behavior(request, _InlineContext(context))
        except _Aborted as aborted:
            await context.abort(*aborted.args)

    return grpc.unary_unary_rpc_method_handler(handle, handler.request_deserializer, handler.response_serializer)


def _register(server, add_to_server, servicer, inline: bool) -> None:
    """handlers.register onto a table, then each unary handler with the context adapter onto `server`."""
    table = handlers._MethodTable()
    handlers.register(table, add_to_server, servicer)
    adapted = {name: (_inline if inline else _adapted)(h) for name, h in table.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(table.service, adapted),))
    server.add_registered_method_handlers(table.service, adapted)


async def serve(argv) -> int:
    inline = "--inline" in argv
    config = parse_args([a for a in argv if a != "--inline"])
    logs.configure(config.log_level)
    log.info("starting", extra={"fields": {"config": {k: str(v) for k, v in vars(config).items()}}})
    metrics = Metrics(CollectorRegistry())
    health = Health([])
    models = ModelRegistry(config, metrics, on_change=health.model_changed)
    server = grpc.aio.server(
        migration_thread_pool=ThreadPoolExecutor(max_workers=config.worker_threads, thread_name_prefix="rpc"),
        options=(("grpc.max_receive_message_length", config.max_message_bytes),
                 ("grpc.max_send_message_length", config.max_message_bytes)),
        maximum_concurrent_rpcs=config.max_concurrent_rpcs or None)
    _register(server, adder_pb2_grpc.add_AdderServicer_to_server, AdderServicer(config, models, metrics), inline)
    _register(server, grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server,
              InferenceServicer(config, models, metrics), inline)
    _register(server, health_pb2_grpc.add_HealthServicer_to_server, health.servicer, inline)
    port = server.add_insecure_port(f"{config.host}:{config.grpc_port}")
    await server.start()
    endpoint = MetricsEndpoint(metrics.registry, config.host, config.metrics_port)
    log.info("listening", extra={"fields": {"host": config.host, "grpc_port": port, "http_port": None,
                                            "metrics_port": endpoint.port, "tls": "off",
                                            "transport": "aio-inline" if inline else "aio"}})
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, models.load_all)
    log.info("models loaded", extra={"fields": {
        "ready": [m.name for m in models.models.values() if m.ready],
        "failed": {m.name: m.reason for m in models.models.values() if not m.ready}}})
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    health.drain()
    models.drain()
    await server.stop(config.grace_seconds)
    health.stop()
    models.close()
    endpoint.stop()
    log.info("stopped", extra={"fields": {}})
    return 0


def main(argv=None) -> int:
    return asyncio.run(serve(sys.argv[1:] if argv is None else list(argv)))


if __name__ == "__main__":
    sys.exit(main())
