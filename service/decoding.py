"""Answer request bytes that do not decode with INVALID_ARGUMENT (grpc's own answer is INTERNAL).

service/handlers.py puts both halves on every unary-request method (all of adder.v1 and KServe v2,
health Check and Watch) when it registers them: a deserializer that returns `Undecodable` instead of
raising, and a check that answers it. The bytes themselves are neither logged nor echoed.
"""

import grpc
from google.protobuf.message import DecodeError


class Undecodable:
    """What the tolerant deserializer returns instead of raising: grpc would abort with INTERNAL."""

    __slots__ = ("message_type",)

    def __init__(self, message_type: str):
        self.message_type = message_type


def message_type(deserializer) -> str:
    owner = getattr(deserializer, "__self__", None)  # generated code passes `SomeMessage.FromString`
    descriptor = getattr(owner, "DESCRIPTOR", None)
    return descriptor.full_name if descriptor is not None else "request"


def tolerant(deserializer):
    undecodable = Undecodable(message_type(deserializer))

    def deserialize(data: bytes):
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError):
            return undecodable

    return deserialize


def checked(behavior):
    """`behavior` for requests that decoded; INVALID_ARGUMENT with the expected type's name otherwise."""

    def handle(request, context):
        if request.__class__ is Undecodable:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the request is not a valid {request.message_type} message (it does not decode)")
        return behavior(request, context)

    return handle
