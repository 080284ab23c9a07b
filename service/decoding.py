"""Answer request bytes that do not decode with INVALID_ARGUMENT (grpc's own answer is INTERNAL)."""

import grpc
from google.protobuf.message import DecodeError


class _Undecodable:
    """What the wrapped deserializer returns instead of raising: grpc would abort with INTERNAL."""

    __slots__ = ("message_type",)

    def __init__(self, message_type: str):
        self.message_type = message_type


def _message_type(deserializer) -> str:
    owner = getattr(deserializer, "__self__", None)  # generated code passes `SomeMessage.FromString`
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else "request"


def _tolerant(deserializer):
    message_type = _message_type(deserializer)

    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError):
            return _Undecodable(message_type)

    return deserialize


def _checked(behavior):
    def handle(request, context):
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the request is not a valid {request.message_type} message (it does not decode)")
        return behavior(request, context)

    return handle


class DecodeErrorInterceptor(grpc.ServerInterceptor):
    """For every unary-request method (all of adder.v1 and KServe v2, health Check and Watch): bytes
    that are not the method's request message get INVALID_ARGUMENT with the expected type's name.
    The bytes themselves are neither logged nor echoed. Streaming requests (reflection) keep grpc's rule.
    """

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        deserializer = _tolerant(handler.request_deserializer)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                _checked(handler.unary_stream), deserializer, handler.response_serializer)
        return grpc.unary_unary_rpc_method_handler(
            _checked(handler.unary_unary), deserializer, handler.response_serializer)
