"""Strict JSON <-> dataclass mapping: every required field present with its declared type, no unknown field.

Why dataclasses and this ~80-line loader rather than pydantic or a JSON Schema: the service image
stays at its runtime dependencies (no pydantic-core, no jsonschema + referencing); the dataclasses
are the one definition, used as typed Python objects by both export/ and service/ (no schema file
to keep in step with code); and the error names the exact field (`manifest.json: edges.density is
missing`), which is what a FAILED model's reason must say.

Adding an optional field later: give it a default (`necessity: float | None = None`); files without
it still load, files with it are type-checked. A field without a default is required.
"""

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class ContractError(ValueError):
    """A file does not match its contract type; the message names the field."""


def from_data(cls: type[T], data: Any, source: str) -> T:
    """`data` (parsed JSON) as an instance of the dataclass `cls`; ContractError names the first bad field,
    e.g. "manifest.json: edges.density is missing"."""
    try:
        return _convert(cls, data, "")
    except _FieldError as error:
        field, problem = error.args
        raise ContractError(f"{source}: {field or 'the top level'} {problem}") from None


def to_data(value: Any) -> Any:
    """A contract dataclass as plain JSON data (dicts, lists, numbers, strings)."""
    return dataclasses.asdict(value)


def dumps(value: Any) -> str:
    return json.dumps(to_data(value), indent=1)


def read(cls: type[T], path: Path) -> T:
    """Read and check one contract file; ContractError on unreadable JSON or a bad field."""
    name = Path(path).name
    try:
        data = json.loads(Path(path).read_text())
    except OSError as error:
        raise ContractError(f"{name}: cannot read ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ContractError(f"{name}: not valid JSON ({error})") from None
    return from_data(cls, data, name)


def write(value: Any, path: Path) -> None:
    """Write a contract dataclass after checking it round-trips (a writer bug fails here, not in the service)."""
    text = dumps(value)
    from_data(type(value), json.loads(text), Path(path).name)
    Path(path).write_text(text)


class _FieldError(Exception):
    """(field path, problem); from_data turns it into a ContractError."""


def _at(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _convert(tp: Any, value: Any, where: str) -> Any:
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _object(tp, value, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (types.UnionType, typing.Union):  # only `X | None` is used
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise _FieldError(where, f"must be a list, got {_kind(value)}")
        return [_convert(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _FieldError(where, f"must be an object, got {_kind(value)}")
        return {key: _convert(args[1], item, _at(where, key)) for key, item in value.items()}
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _FieldError(where, f"must be a number, got {_kind(value)}")
        return float(value)
    if tp is int and isinstance(value, bool) or not isinstance(value, tp):
        raise _FieldError(where, f"must be {tp.__name__}, got {_kind(value)}")
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _object(cls: type, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise _FieldError(where, f"must be an object, got {_kind(value)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    unknown = sorted(set(value) - set(fields))
    missing = [name for name, field in fields.items() if name not in value
               and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING]
    if missing:  # a renamed field shows as both: say so in one reason
        instead = f" (found instead: {', '.join(map(repr, unknown))})" if unknown else ""
        raise _FieldError(_at(where, missing[0]), f"is missing{instead}")
    if unknown:
        raise _FieldError(_at(where, unknown[0]), f"is not a field of {cls.__name__} (a new field is added to "
                                                   f"its contract/ dataclass first)")
    kwargs = {name: _convert(hints[name], value[name], _at(where, name)) for name in fields if name in value}
    return cls(**kwargs)
