"""botvisor TOML written from plain dicts: the bench's configurations and the tests' fleets.

One writer, so a bench run and a test fleet spell a configuration the same way (tests import
it from here, through tests/harness.py). Only what botvisor's files use: scalars, inline
tables and arrays as values, ``[table]`` and ``[[array]]`` headers with one level of sub-tables.
"""

from __future__ import annotations

from typing import Any


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def table(name: str, values: dict[str, Any], header: str | None = None) -> list[str]:
    """``[name]`` (or ``header``) with the scalars of ``values``, then each dict in it as ``[name.key]``."""
    lines = [header or f"[{name}]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in values.items() if not isinstance(v, dict)]
    for key, value in values.items():
        if isinstance(value, dict):
            lines.append(f"[{name}.{key}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in value.items()]
    return lines


def array_of_tables(name: str, entries: list[dict[str, Any]]) -> list[str]:
    """One ``[[name]]`` per entry, its dicts as ``[name.key]`` sub-tables (``[[bots]]``, ``[bots.simulated]``)."""
    return [line for entry in entries for line in table(name, entry, f"[[{name}]]")]


def render_config(supervisor: dict[str, Any], bots: list[dict[str, Any]], extra: str = "") -> str:
    """A whole file: ``[supervisor]`` (its dicts as sub-tables such as backoff), the bots, then ``extra``."""
    return "\n".join(table("supervisor", supervisor) + array_of_tables("bots", bots)) + "\n" + extra
