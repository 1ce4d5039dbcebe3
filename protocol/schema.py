"""Turn plain mappings (decoded msgpack, parsed TOML) into typed, frozen dataclasses.

One strict converter shared by the wire codec and the configuration loader, so both refuse
bad input the same way: unknown keys, missing keys and wrong types raise ``SchemaError``
naming the key path. Per-field range checks ride in the field metadata as ``check``: a
function returning an error string, or None when the value is fine.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Callable, TypeVar

from .errors import SchemaError

T = TypeVar("T")

Check = Callable[[Any], "str | None"]


def checked(check: Check, **kwargs: Any) -> Any:
    """A dataclass field whose value must also pass ``check``."""
    return dataclasses.field(metadata={"check": check}, **kwargs)


def in_range(lo: float | None = None, hi: float | None = None, *, above: float | None = None) -> Check:
    def check(value: Any) -> str | None:
        if above is not None and not value > above:
            return f"must be greater than {above}, got {value!r}"
        if lo is not None and value < lo:
            return f"must be at least {lo}, got {value!r}"
        if hi is not None and value > hi:
            return f"must be at most {hi}, got {value!r}"
        return None

    return check


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against type ``tp`` and convert it (nested dataclasses, enums)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, path)
            except SchemaError as exc:
                errors.append(exc.reason)
        raise SchemaError(path, " or ".join(dict.fromkeys(errors)))
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed or type(value) is bool and True not in allowed:
            raise SchemaError(path, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SchemaError(path, f"must be a list, got {type(value).__name__}")
        (item_tp, *_rest) = typing.get_args(tp) or (Any,)
        items = [convert(item_tp, item, f"{path}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise SchemaError(path, f"must be a table/map, got {type(value).__name__}")
        key_tp, val_tp = typing.get_args(tp) or (str, Any)
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise SchemaError(path, f"keys must be strings, got {key!r}")
            out[key] = convert(val_tp, item, _join(path, key))
        return out
    if dataclasses.is_dataclass(tp):
        return from_mapping(tp, value, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except (ValueError, TypeError):
            allowed = ", ".join(repr(m.value) for m in tp)
            raise SchemaError(path, f"must be one of {allowed}, got {value!r}") from None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise SchemaError(path, f"must be a number, got {type(value).__name__} {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise SchemaError(path, f"must be an integer, got {type(value).__name__} {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise SchemaError(path, f"must be {_type_name(tp)}, got {type(value).__name__} {value!r}")
    raise TypeError(f"schema: unsupported annotation {tp!r} at {path}")


def from_mapping(cls: type[T], value: Any, path: str = "") -> T:
    """Build dataclass ``cls`` from ``value``; refuse unknown or missing keys and wrong types."""
    if not isinstance(value, Mapping):
        raise SchemaError(path, f"must be a table/map, got {type(value).__name__}")
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise SchemaError(_join(path, str(key)), f"unknown key (known keys: {known})")
    kwargs = {}
    for name, field in fields.items():
        where = _join(path, name)
        if name not in value:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise SchemaError(where, "missing required key")
            continue
        converted = convert(hints[name], value[name], where)
        check = field.metadata.get("check")
        if check is not None and converted is not None:
            problem = check(converted)
            if problem:
                raise SchemaError(where, problem)
        kwargs[name] = converted
    return cls(**kwargs)


def to_mapping(obj: Any, *, drop_none: bool = True) -> Any:
    """The plain-data form of a dataclass (enums as values, None fields dropped)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for field in dataclasses.fields(obj):
            item = getattr(obj, field.name)
            if item is None and drop_none:
                continue
            out[field.name] = to_mapping(item, drop_none=drop_none)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_mapping(item, drop_none=drop_none) for item in obj]
    if isinstance(obj, dict):
        return {key: to_mapping(item, drop_none=drop_none) for key, item in obj.items()}
    return obj
