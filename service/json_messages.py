"""Protobuf messages <-> plain JSON for HTTP: every field shown, 64-bit integers as numbers, typed parameter parsing."""

from collections.abc import Iterable

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from service.errors import InvalidArgument, shown

_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2 ** 31), 2 ** 31 - 1), FieldDescriptor.CPPTYPE_INT64: (-(2 ** 63), 2 ** 63 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2 ** 32 - 1), FieldDescriptor.CPPTYPE_UINT64: (0, 2 ** 64 - 1),
}
_INT_NAMES = {FieldDescriptor.CPPTYPE_INT32: "32-bit integer", FieldDescriptor.CPPTYPE_INT64: "64-bit integer",
              FieldDescriptor.CPPTYPE_UINT32: "32-bit unsigned integer",
              FieldDescriptor.CPPTYPE_UINT64: "64-bit unsigned integer"}
_FLOATS = (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE)
_TRUE, _FALSE = ("", "1", "true", "yes", "on"), ("0", "false", "no", "off")  # "?trace" alone means true


def to_json(message) -> dict:
    """Every field of `message` (defaults too), as proto3 JSON would name them, but int64 as numbers:
    proto3 JSON writes them as strings, which a browser or curl user would have to convert back."""
    out = {}
    for field in message.DESCRIPTOR.fields:
        value = getattr(message, field.name)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            out[field.name] = {k: _value(field.message_type.fields_by_name["value"], v) for k, v in value.items()}
        elif field.is_repeated:
            out[field.name] = [_value(field, v) for v in value]
        else:
            out[field.name] = _value(field, value)
    return out


def _value(field: FieldDescriptor, value):
    if field.message_type is not None:
        if field.message_type.full_name.startswith("google.protobuf."):  # Struct, Value, ...: their own JSON
            return json_format.MessageToDict(value)
        return to_json(value)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name
    return value


def from_query(message_class, items: Iterable[tuple[str, str]]):
    """A request message from query parameters (`a=36&b=28&trace=1`); a repeated field takes the
    parameter several times or comma-separated values (`a=1,2&b=3,4`)."""
    grouped: dict[str, list[str]] = {}
    for name, text in items:
        grouped.setdefault(name, []).append(text)
    message = message_class()
    for name, texts in grouped.items():
        field = _field(message, name)
        if field.is_repeated:
            values = [_parse(field, name, part) for text in texts for part in text.split(",") if part != ""]
            getattr(message, name).extend(values)
        elif len(texts) > 1:
            raise InvalidArgument(f"parameter {name!r} is given {len(texts)} times; it takes one value")
        else:
            setattr(message, name, _parse(field, name, texts[0]))
    return message


def from_json(message_class, body: object):
    """A request message from a JSON object; each value must already have the field's JSON type."""
    if not isinstance(body, dict):
        raise InvalidArgument(f"the request body must be a JSON object, got {type(body).__name__}")
    message = message_class()
    for name, value in body.items():
        field = _field(message, name)
        if field.is_repeated:
            if not isinstance(value, list):
                raise InvalidArgument(f"{name} must be a list, got {shown(str(value))}")
            getattr(message, name).extend(_checked(field, f"{name}[{i}]", v) for i, v in enumerate(value))
        elif field.message_type is not None:
            try:
                json_format.ParseDict(value, getattr(message, name))
            except json_format.ParseError as error:
                raise InvalidArgument(f"{name}: {error}") from None
        else:
            setattr(message, name, _checked(field, name, value))
    return message


def _field(message, name: str) -> FieldDescriptor:
    field = message.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        known = ", ".join(f.name for f in message.DESCRIPTOR.fields) or "no parameters"
        raise InvalidArgument(f"unknown parameter {shown(name)}: {message.DESCRIPTOR.name} takes {known}")
    return field


def _parse(field: FieldDescriptor, name: str, text: str):
    """One query-string value as the field's type."""
    kind = field.cpp_type
    if kind in _INT_RANGES:
        try:
            value = int(text)
        except ValueError:
            raise InvalidArgument(f"{name}={shown(text)} is not an integer") from None
        return _checked(field, name, value)
    if kind == FieldDescriptor.CPPTYPE_BOOL:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise InvalidArgument(f"{name}={shown(text)} is not a boolean (1/0, true/false)")
    if kind in _FLOATS:
        try:
            return float(text)
        except ValueError:
            raise InvalidArgument(f"{name}={shown(text)} is not a number") from None
    if kind == FieldDescriptor.CPPTYPE_STRING:
        return text
    raise InvalidArgument(f"parameter {name!r} cannot be given in a query string: send a JSON body")


def _checked(field: FieldDescriptor, name: str, value):
    """`value` if it has the field's JSON type and fits it; else InvalidArgument naming the field."""
    kind = field.cpp_type
    if kind in _INT_RANGES:
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"{name}={shown(str(value))} is not an integer")
        low, high = _INT_RANGES[kind]
        if not low <= value <= high:
            raise InvalidArgument(f"{name}={shown(str(value))} does not fit a {_INT_NAMES[kind]}")
        return value
    expected = {FieldDescriptor.CPPTYPE_BOOL: bool, FieldDescriptor.CPPTYPE_STRING: str}.get(kind)
    if kind in _FLOATS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if expected is None or not isinstance(value, expected):
        raise InvalidArgument(f"{name}={shown(str(value))} is not a {expected.__name__ if expected else 'value'}")
    return value
