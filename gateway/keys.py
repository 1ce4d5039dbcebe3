"""API keys: made once, shown once, stored as hashes in a JSON file next to the config.

A key is 32 random bytes (``bvk_`` + url-safe base64), so a plain SHA-256 of it is as good
as a slow password hash: nobody can guess a 256-bit secret whatever the hash costs. Lookups
compare the presented key's hash with every stored hash in constant time (hmac.compare_digest,
no early exit), so timing tells nothing about how much of a key matched. The file is re-read
when it changes on disk, so ``keys add`` and ``keys revoke`` take effect without a restart.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from protocol.codec import valid_name

PREFIX = "bvk_"


class KeyError_(ValueError):
    """A key operation that cannot be done (a duplicate name, an unknown key, a bad glob)."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    """One key's record: never the key itself."""

    name: str
    sha256: str
    #: bot id globs this key may see and act on
    bots: list[str] = field(default_factory=lambda: ["*"])
    read_only: bool = False
    created: float = 0.0

    def sees(self, bot: str) -> bool:
        return any(fnmatch.fnmatchcase(bot, g) for g in self.bots)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "bots": list(self.bots), "read_only": self.read_only, "created": self.created}


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def default_keys_path(config_path: Path) -> Path:
    return config_path.with_name(config_path.stem + ".keys.json")


class KeyStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: list[ApiKey] = []
        self._stamp: tuple[int, int] | None = None

    # -- reading -------------------------------------------------------------------------
    def keys(self) -> list[ApiKey]:
        self._refresh()
        return list(self._keys)

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = [], None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        raw = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        self._keys = [ApiKey(**entry) for entry in raw.get("keys", [])]
        self._stamp = stamp

    def find(self, presented: str) -> ApiKey | None:
        """The key ``presented`` is, or None; the same work whatever matched."""
        digest = hash_key(presented)
        found = None
        for key in self.keys():
            if hmac.compare_digest(digest, key.sha256):
                found = key
        return found

    # -- writing (the CLI) ---------------------------------------------------------------
    def add(self, name: str, bots: list[str] | None = None, read_only: bool = False) -> str:
        """Store a new key's hash; return the key (the only time it exists in clear)."""
        if not valid_name(name):
            raise KeyError_(f"{name!r} is not a valid key name (1 to 64 letters, digits, '_' or '-')")
        globs = list(bots or ["*"])
        bad = [g for g in globs if not g or "." in g or "/" in g]
        if bad:
            raise KeyError_(f"bad bot glob(s): {', '.join(map(repr, bad))}")
        keys = self.keys()
        if any(k.name == name for k in keys):
            raise KeyError_(f"a key named {name!r} exists (revoke it first)")
        key = PREFIX + secrets.token_urlsafe(32)
        keys.append(ApiKey(name, hash_key(key), globs, read_only, round(time.time(), 3)))
        self._write(keys)
        return key

    def revoke(self, name: str) -> None:
        keys = self.keys()
        if not any(k.name == name for k in keys):
            raise KeyError_(f"no key named {name!r}")
        self._write([k for k in keys if k.name != name])

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"keys": [asdict(k) for k in keys]}, indent=2) + "\n"
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".keys-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._stamp = None
