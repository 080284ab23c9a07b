"""Register servicers with the gRPC server through handlers built once, at start-up (no interceptor).

Each method comes from the generated add_*_to_server's own table (names, message types, arity), so the
generated code stays the one source of them. Every unary-request method gets decoding.py's tolerant
deserializer and check; a method marked with errors.rpc also gets errors.answering (status codes,
in-flight gauge, request histogram) around its plain function. A grpc.ServerInterceptor did the first
on every call, building new handler objects each time; the decorator looked its labels up per call.
"""

from collections.abc import Callable

import grpc

from service import decoding
from service.errors import answering


class _MethodTable:
    """Stands in for the server in a generated add_*_to_server: keeps the method handlers it is given."""

    def __init__(self):
        self.service = ""
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, generic_handlers) -> None:
        pass  # the same handlers again, behind a lookup by name: register() makes its own

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        self.service, self.handlers = service, dict(handlers)


def register(server: grpc.Server, add_to_server: Callable, servicer) -> None:
    """What `add_to_server(servicer, server)` does, with each method's handler made lean."""
    table = _MethodTable()
    add_to_server(servicer, table)
    if not table.handlers:
        raise ValueError(f"{add_to_server.__name__} registered no methods")
    lean = {name: _lean(handler, servicer) for name, handler in table.handlers.items()}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(table.service, lean),))
    server.add_registered_method_handlers(table.service, lean)


def _lean(handler: grpc.RpcMethodHandler, servicer) -> grpc.RpcMethodHandler:
    if handler.request_streaming or handler.request_deserializer is None:
        return handler  # streaming requests (reflection) keep grpc's own rules
    streaming = handler.response_streaming
    behavior = handler.unary_stream if streaming else handler.unary_unary
    spec = getattr(behavior, "rpc_spec", None)
    if spec is not None:  # errors.rpc's wrapper, bound: build its work once around the plain function
        behavior = answering(spec, behavior.__func__.__wrapped__, servicer)
    make = grpc.unary_stream_rpc_method_handler if streaming else grpc.unary_unary_rpc_method_handler
    return make(decoding.checked(behavior), decoding.tolerant(handler.request_deserializer),
                handler.response_serializer)
