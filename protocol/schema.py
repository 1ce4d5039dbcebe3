"""Turn plain mappings (decoded msgpack, parsed TOML) into typed, frozen dataclasses.

One strict converter shared by the wire codec and the configuration loader, so both refuse
bad input the same way: unknown keys, missing keys and wrong types raise ``SchemaError``
naming the key path. Per-field range checks ride in the field metadata as ``check``: a
function returning an error string, or None when the value is fine.

Every message on the bus goes through here, so each type is compiled once into a fast
converter (a closure over its field plan) that only answers "valid or not". When it says
"not", the slower explaining converter runs on the same value and raises the SchemaError
with the key path: error messages cost nothing on the valid path, and the fast path can
never accept what the explaining one refuses, because it is only ever stricter.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import math
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
        others = [option for option in options if option is not type(None)]
        if len(others) == 1:  # X | None: X's own error, with its full key path (media.kind)
            return convert(others[0], value, path)
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
            # nan compares false with every bound; inf is never meant; a huge int overflows
            if isinstance(value, int) and abs(value) > 2**1023 or not math.isfinite(value):
                raise SchemaError(path, f"must be a finite number, got {value!r}")
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
    try:
        return _fast(cls)(value)  # type: ignore[no-any-return]
    except _Mismatch:
        return _explained_from_mapping(cls, value, path)


def _explained_from_mapping(cls: type[T], value: Any, path: str) -> T:
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


#: values that are their own plain-data form
_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


@functools.cache
def _field_names(tp: type) -> tuple[str, ...] | None:
    return tuple(f.name for f in dataclasses.fields(tp)) if dataclasses.is_dataclass(tp) else None


def to_mapping(obj: Any, *, drop_none: bool = True) -> Any:
    """The plain-data form of a dataclass (enums as values, None fields dropped)."""
    kind = type(obj)
    if kind in _SCALARS:
        return obj
    names = _field_names(kind)
    if names is not None:
        out = {}
        for name in names:
            item = getattr(obj, name)
            if item is None:
                if not drop_none:
                    out[name] = None
            elif type(item) in _SCALARS:
                out[name] = item
            else:
                out[name] = to_mapping(item, drop_none=drop_none)
        return out
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, (list, tuple)):
        return [to_mapping(item, drop_none=drop_none) for item in obj]
    if isinstance(obj, dict):
        return {key: to_mapping(item, drop_none=drop_none) for key, item in obj.items()}
    return obj


# -- the compiled fast path ------------------------------------------------------------------
class _Mismatch(Exception):
    """The fast path's only answer to a bad value: "ask the explaining converter"."""


_MISMATCH = _Mismatch()
Fast = Callable[[Any], Any]


def _mismatch(_value: Any) -> Any:
    raise _MISMATCH


def _identity(value: Any) -> Any:
    return value


@functools.cache
def _fast(tp: Any) -> Fast:
    """The converter of ``tp``, compiled once: exact types only, no paths, no messages."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return _identity
    if origin in (typing.Union, types.UnionType):
        return _fast_union(typing.get_args(tp))
    if origin is typing.Literal:
        return _fast_literal(typing.get_args(tp))
    if origin in (list, tuple):
        return _fast_sequence(_fast((typing.get_args(tp) or (Any,))[0]), origin)
    if origin is dict or tp is dict:
        return _fast_dict(_fast((typing.get_args(tp) or (str, Any))[1]))
    if dataclasses.is_dataclass(tp):
        return _fast_dataclass(tp)  # type: ignore[arg-type]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _fast_enum(tp)
    if tp is float:
        return _fast_float
    if isinstance(tp, type):
        return _fast_exact(tp)
    return _mismatch  # the explaining converter raises the TypeError for the annotation


def _fast_union(options: tuple[Any, ...]) -> Fast:
    nullable = type(None) in options
    converters = tuple(_fast(o) for o in options if o is not type(None))
    if nullable and len(converters) == 1:
        (only,) = converters

        def optional(value: Any) -> Any:
            return None if value is None else only(value)

        return optional

    def union(value: Any) -> Any:
        if value is None and nullable:
            return None
        for convert_option in converters:
            try:
                return convert_option(value)
            except _Mismatch:
                pass
        raise _MISMATCH

    return union


def _fast_literal(allowed: tuple[Any, ...]) -> Fast:
    members = frozenset(allowed)
    bool_allowed = True in allowed

    def literal(value: Any) -> Any:
        try:
            if value in members and (bool_allowed or type(value) is not bool):
                return value
        except TypeError:  # unhashable
            pass
        raise _MISMATCH

    return literal


def _fast_sequence(item: Fast, origin: type) -> Fast:
    def sequence(value: Any) -> Any:
        if type(value) is not list and type(value) is not tuple:
            raise _MISMATCH
        items = [item(x) for x in value]
        return tuple(items) if origin is tuple else items

    return sequence


def _fast_dict(item: Fast) -> Fast:
    def mapping(value: Any) -> Any:
        if type(value) is not dict:
            raise _MISMATCH
        out = {}
        for key, x in value.items():
            if type(key) is not str:
                raise _MISMATCH
            out[key] = item(x)
        return out

    return mapping


def _fast_dataclass(cls: type) -> Fast:
    """A converter generated as Python source for ``cls`` (as dataclasses generates __init__):
    one function with the field plan inlined, exact scalar types checked in place, no kwargs
    dict and no call per scalar field. Every bus message goes through two of these."""
    hints = _hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    env: dict[str, Any] = {"cls": cls, "Mismatch": _MISMATCH, "names": frozenset(f.name for f in fields),
                           "MISSING": dataclasses.MISSING, "float": float, "type": type, "dict": dict}
    lines = ["def build(value):",
             "    if type(value) is not dict or not names.issuperset(value):",
             "        raise Mismatch",
             "    get = value.get"]
    args = []
    for i, f in enumerate(fields):
        v = f"v{i}"
        args.append(f"{f.name}={v}")
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required:
            lines += [f"    {v} = get({f.name!r}, MISSING)", f"    if {v} is MISSING:", "        raise Mismatch"]
        elif f.default is not dataclasses.MISSING:
            env[f"d{i}"] = f.default
            lines.append(f"    {v} = get({f.name!r}, d{i})")
            if f.default is not None:  # the default itself is the field's own value: no check needed
                lines.append(f"    if {v} is not d{i}:")
        else:  # a default_factory: build it only when the key is absent
            env[f"f{i}"] = f.default_factory
            lines += [f"    {v} = get({f.name!r}, MISSING)", f"    if {v} is MISSING:", f"        {v} = f{i}()",
                      "    else:"]
        indent = "        " if (not required and f.default is not None) else "    "
        lines += [indent + line for line in _field_check(i, hints[f.name], env)]
        check = f.metadata.get("check")
        if check is not None:
            env[f"k{i}"] = check
            lines += [indent + f"if {v} is not None and k{i}({v}):", indent + "    raise Mismatch"]
    lines.append(f"    return cls({', '.join(args)})")
    exec(compile("\n".join(lines), f"<schema of {cls.__qualname__}>", "exec"), env)  # noqa: S102
    return env["build"]  # type: ignore[no-any-return]


def _field_check(i: int, tp: Any, env: dict[str, Any]) -> list[str]:
    """Source lines that check (and convert in place) local ``v{i}`` of annotation ``tp``."""
    v = f"v{i}"
    nullable = False
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        nullable = len(options) < len(typing.get_args(tp))
        if len(options) == 1:
            tp = options[0]
    if tp in (str, int, bool, bytes):  # exact types: bool is no int here, as in the explaining path
        env[f"t{i}"] = tp
        test = f"type({v}) is not t{i}"
        return [f"if {test}{f' and {v} is not None' if nullable else ''}:", "    raise Mismatch"]
    if tp is float:
        prefix = f"if {v} is None:\n    pass\nel" if nullable else ""
        # as _fast_float: nan and the infinities refused (v - v is 0.0 only for a finite float),
        # and an int that a float cannot hold
        lines = f"{prefix}if type({v}) is float:\n    if {v} - {v} != 0.0:\n        raise Mismatch\n" \
                f"elif type({v}) is int and -BIG <= {v} <= BIG:\n    {v} = float({v})\nelse:\n    raise Mismatch"
        env["BIG"] = 2**1023
        return lines.split("\n")
    env[f"c{i}"] = _fast(tp)
    if nullable:
        return [f"if {v} is not None:", f"    {v} = c{i}({v})"]
    return [f"{v} = c{i}({v})"]


def _fast_enum(tp: type[enum.Enum]) -> Fast:
    members = tp._value2member_map_

    def member(value: Any) -> Any:
        try:
            found = members.get(value)
        except TypeError:  # unhashable
            found = None
        if found is None:
            raise _MISMATCH
        return found

    return member


def _fast_float(value: Any) -> Any:
    kind = type(value)
    if kind is float:
        if value - value == 0.0:  # false for nan and the infinities
            return value
        raise _MISMATCH
    if kind is int and -2**1023 <= value <= 2**1023:
        return float(value)
    raise _MISMATCH


def _fast_exact(tp: type) -> Fast:
    def exact(value: Any) -> Any:
        if type(value) is tp:
            return value
        raise _MISMATCH

    return exact
