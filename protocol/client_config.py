"""What a control client needs from the configuration: the endpoints, not a valid fleet.

A running fleet must stay controllable while its file has a typo in a bot's entry (the fix is
being made): ``load_client_config`` loads the whole file when it can, and otherwise only the
keys that say where the supervisor is (``[endpoints]``, ``[security]``, the run_dir and name),
returning the full file's error alongside for the caller to show as a warning.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, load_config, parse_config

#: [supervisor] keys a client reads (where the supervisor is, how long to wait for it)
CLIENT_KEYS = ("server_name", "run_dir", "auth_dir", "command_timeout")


def load_client_config(path: str | os.PathLike[str]) -> tuple[Config, ConfigError | None]:
    """(config, None) for a valid file; (its endpoints only, the error) when only the fleet part
    is wrong; raises the file's ConfigError when even the endpoints cannot be read."""
    try:
        return load_config(path), None
    except ConfigError as exc:
        error = exc
    try:
        raw: Any = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        raise error from None
    supervisor = raw.get("supervisor", {})
    if not isinstance(supervisor, dict):
        raise error
    reduced = {"supervisor": {k: supervisor[k] for k in CLIENT_KEYS if k in supervisor}}
    for table in ("endpoints", "security"):
        if table in raw:
            reduced[table] = raw[table]
    try:
        return parse_config(reduced, Path(path)), error
    except ConfigError:
        raise error from None
