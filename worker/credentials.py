"""Each bot's credentials: stored, described, backed up and restored, never torn, never shared.

Layout (as the original's CredentialsManager)::

    <auth_root>/<server>/bot_<id>/
        session.sqlite3            neonize: whatsmeow's SQLite session store (NEONIZE_STORE)
        creds.json                 simulated: a JSON session (JSON_STORE)
        creds.metadata.json        botId, phoneNumber, lastUpdated, expiresAt, verified, version
        app-state.sqlite3          a bot app's state and dialogs (APP_STATE), when the bot has an app
        creds.backup.<UTC stamp>.sqlite3 | .json, creds.backup.<UTC stamp>.metadata.json,
        creds.backup.<UTC stamp>.app-state.sqlite3

Times in the metadata are unix milliseconds, like the original's ``Date.now()``. Every write is
atomic (temporary file, fsync, rename, fsync of the directory). SQLite stores are copied with
SQLite's online backup API, so a copy taken while the worker writes is consistent. Importing
this module starts nothing; ``bot`` arguments are a BotConfig or a bot id.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from protocol import CredsUpdate, valid_name

from .atomic import fsync_dir, write_atomic
from .botdir import bot_dir_path, check_bot_dir, ensure_private_dir, follow_owner
from .storefiles import copy_sqlite

NEONIZE_STORE = "session.sqlite3"
JSON_STORE = "creds.json"
METADATA_FILE = "creds.metadata.json"
BACKUP_PREFIX = "creds.backup."
#: a bot app's state database (botvisor/state.py): backed up and restored with the session
APP_STATE = "app-state.sqlite3"
METADATA_VERSION = "1"
#: SQLite's companions of a store: they belong to it and move with it
SIDECARS = ("-wal", "-shm", "-journal")
STAMP_FORMAT = "%Y%m%dT%H%M%S.%fZ"
DAY_MS = 86_400_000


class CredentialsError(Exception):
    """A credentials file is unreadable or a request cannot be met; the message names the file."""

    def __init__(self, message: str, file: Path | None = None) -> None:
        super().__init__(message)
        self.file = file


@dataclass(frozen=True, slots=True)
class CredentialMetadata:
    bot_id: str
    phone_number: str | None
    #: unix milliseconds
    last_updated: int
    expires_at: int | None
    verified: bool
    version: str = METADATA_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"botId": self.bot_id, "phoneNumber": self.phone_number, "lastUpdated": self.last_updated,
                "expiresAt": self.expires_at, "verified": self.verified, "version": self.version}

    @classmethod
    def from_json(cls, raw: Any) -> CredentialMetadata:
        if not isinstance(raw, dict) or not isinstance(raw.get("botId"), str) \
                or not isinstance(raw.get("lastUpdated"), (int, float)) or not isinstance(raw.get("verified"), bool):
            raise ValueError("not a metadata object (botId, lastUpdated and verified are required)")
        return cls(raw["botId"], raw.get("phoneNumber"), int(raw["lastUpdated"]),
                   None if raw.get("expiresAt") is None else int(raw["expiresAt"]), raw["verified"],
                   str(raw.get("version", METADATA_VERSION)))


@dataclass(frozen=True, slots=True)
class Backup:
    stamp: str
    #: the copied store (None for a metadata-only backup) and the copied metadata (or None)
    store: Path | None
    metadata: Path | None
    #: the copied app state database (None: the bot had none)
    app_state: Path | None = None

    @property
    def created(self) -> datetime:
        return datetime.strptime(self.stamp, STAMP_FORMAT).replace(tzinfo=timezone.utc)

    @property
    def files(self) -> list[Path]:
        return [p for p in (self.store, self.metadata, self.app_state) if p is not None]


def now_ms() -> int:
    return int(time.time() * 1000)


class CredentialsManager:
    """Credentials of the bots under ``<auth_root>/<server_name>``."""

    def __init__(self, auth_root: str | os.PathLike[str], server_name: str, *, backup_keep: int = 5,
                 expiry_days: float = 90, default_backend: str = "simulated") -> None:
        if backup_keep < 1:
            raise ValueError("backup_keep must be at least 1")
        self.auth_root = Path(auth_root)
        self.server_name = server_name
        self.backup_keep = backup_keep
        self.expiry_days = expiry_days
        self.default_backend = default_backend
        self._cache: dict[str, tuple[tuple[int, int, int], Any]] = {}

    @classmethod
    def for_bot_dir(cls, bot_dir: Path, **options: Any) -> CredentialsManager:
        """The manager of ``auth/<server>/bot_<id>`` (what a worker has in its spec)."""
        bot_dir = Path(bot_dir)
        return cls(bot_dir.parent.parent, bot_dir.parent.name, **options)

    # -- where things are ----------------------------------------------------------------
    def bot_id(self, bot: Any) -> str:
        return bot if isinstance(bot, str) else bot.id

    def bot_dir(self, bot: Any) -> Path:
        """The bot's directory; ValueError for a bad id, FatalBotError for a symlinked directory."""
        path = bot_dir_path(self.auth_root, self.server_name, self.bot_id(bot))
        check_bot_dir(path, self.auth_root)
        return path

    def backend(self, bot: Any) -> str:
        if not isinstance(bot, str):
            return bot.backend
        directory = self.bot_dir(bot)
        if (directory / NEONIZE_STORE).exists():
            return "neonize"
        if (directory / JSON_STORE).exists():
            return "simulated"
        return self.default_backend

    def store_path(self, bot: Any) -> Path:
        name = NEONIZE_STORE if self.backend(bot) == "neonize" else JSON_STORE
        return self.bot_dir(bot) / name

    def metadata_path(self, bot: Any) -> Path:
        return self.bot_dir(bot) / METADATA_FILE

    # -- credentials ---------------------------------------------------------------------
    def save_credentials(self, bot: Any, credentials: Any) -> Path:
        """Store the session atomically: a JSON-able mapping (simulated), or a SQLite database given as
        a path or an open connection (neonize). The metadata is updated; returns the store's path.
        Not while a worker runs the bot: whatsmeow keeps its store open (migration, tests, tools)."""
        store = self.store_path(bot)
        self._ensure_dir(store.parent)
        if store.name == NEONIZE_STORE:
            if not isinstance(credentials, (str, os.PathLike, sqlite3.Connection)):
                raise TypeError("a neonize session is a SQLite database: give its path or a connection")
            copy_sqlite(credentials if isinstance(credentials, sqlite3.Connection) else Path(credentials), store)
            for suffix in SIDECARS:  # a stale -wal would be replayed onto the new store
                Path(f"{store}{suffix}").unlink(missing_ok=True)
        else:
            write_atomic(store, json.dumps(credentials, indent=1).encode())
        follow_owner(store, store.parent)
        self.clear_cache(self.bot_id(bot))
        self.update_metadata(bot, verified=self._verified_hint(bot))
        return store

    def load_credentials(self, bot: Any) -> dict[str, Any] | None:
        """The session (JSON store), or whatsmeow's device row (SQLite store); None when there is none."""
        store = self.store_path(bot)
        return self._cached(f"creds:{self.bot_id(bot)}", store, self._read_store)

    def has_credentials(self, bot: Any) -> bool:
        """True when a paired session is stored (a SQLite store with a device, a readable JSON store)."""
        try:
            return bool(self.load_credentials(bot))
        except CredentialsError:
            return False

    def _read_store(self, store: Path) -> dict[str, Any] | None:
        if store.name != NEONIZE_STORE:
            try:
                return json.loads(store.read_bytes())
            except (ValueError, UnicodeDecodeError) as exc:
                raise CredentialsError(f"{store}: not valid JSON: {exc}", store) from None
        try:
            db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
            try:
                db.row_factory = sqlite3.Row
                row = db.execute("SELECT jid, lid, platform, business_name, push_name FROM whatsmeow_device "
                                 "LIMIT 1").fetchone()
            finally:
                db.close()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return None  # created by neonize, never paired
            raise CredentialsError(f"{store}: {exc}", store) from None
        except sqlite3.DatabaseError as exc:
            raise CredentialsError(f"{store}: {exc}", store) from None
        return dict(row) if row is not None else None

    def clear_all_credentials(self, bot: Any) -> Backup | None:
        """Back up, then remove the store (with its SQLite companions) and the metadata."""
        backup = self.backup_credentials(bot)
        store = self.store_path(bot)
        for path in [store, *(Path(f"{store}{s}") for s in SIDECARS), self.metadata_path(bot)]:
            path.unlink(missing_ok=True)
        if store.parent.exists():
            fsync_dir(store.parent)
        self.clear_cache(self.bot_id(bot))
        return backup

    # -- metadata ------------------------------------------------------------------------
    def get_credential_metadata(self, bot: Any) -> CredentialMetadata | None:
        return self._cached(f"meta:{self.bot_id(bot)}", self.metadata_path(bot), self._read_metadata)

    def _read_metadata(self, path: Path) -> CredentialMetadata:
        try:
            return CredentialMetadata.from_json(json.loads(path.read_bytes()))
        except (ValueError, UnicodeDecodeError) as exc:
            raise CredentialsError(f"{path}: {exc}", path) from None

    def update_metadata(self, bot: Any, *, verified: bool | None = None, phone_number: str | None = None,
                        touch: bool = True) -> CredentialMetadata:
        """Write the metadata atomically; ``touch`` renews lastUpdated (and so expiresAt)."""
        try:
            old = self.get_credential_metadata(bot)
        except CredentialsError:
            old = None
        stamp = now_ms() if touch or old is None else old.last_updated
        phone = phone_number or (old.phone_number if old else None) or getattr(bot, "phone_number", None)
        meta = CredentialMetadata(
            bot_id=self.bot_id(bot), phone_number=phone, last_updated=stamp,
            expires_at=stamp + int(self.expiry_days * DAY_MS),
            verified=verified if verified is not None else (old.verified if old else False),
        )
        path = self.metadata_path(bot)
        self._ensure_dir(path.parent)
        write_atomic(path, json.dumps(meta.to_json(), indent=1).encode())
        follow_owner(path, path.parent)
        self._cache.pop(f"meta:{meta.bot_id}", None)
        return meta

    def record(self, bot: Any, reason: str, *, verified: bool, phone_number: str | None = None) -> CredsUpdate:
        """Update the metadata for a pairing, connect, logout or expiry; the creds-update to publish."""
        meta = self.update_metadata(bot, verified=verified, phone_number=phone_number, touch=reason != "expired")
        return CredsUpdate(verified=meta.verified, phone_number=meta.phone_number,
                           last_updated=meta.last_updated / 1000, reason=reason)

    def is_credential_expired(self, bot: Any) -> bool:
        """True when the metadata is older than expiry_days (or past its expiresAt); False without metadata."""
        try:
            meta = self.get_credential_metadata(bot)
        except CredentialsError:
            return True
        if meta is None:
            return False
        limit = meta.last_updated + int(self.expiry_days * DAY_MS)
        if meta.expires_at is not None:
            limit = min(limit, meta.expires_at)
        return now_ms() > limit

    def get_credential_age(self, bot: Any) -> int | None:
        """Milliseconds since the metadata's lastUpdated (None without metadata)."""
        meta = self.get_credential_metadata(bot)
        return None if meta is None else max(0, now_ms() - meta.last_updated)

    def _verified_hint(self, bot: Any) -> bool:
        try:
            return self.has_credentials(bot)
        except (ValueError, CredentialsError):
            return False

    # -- backups -------------------------------------------------------------------------
    def backup_credentials(self, bot: Any, *, keep_stamps: tuple[str, ...] = ()) -> Backup | None:
        """Copy the store and metadata to ``creds.backup.<UTC stamp>.*``; keep the newest backup_keep.
        None when there is nothing to back up."""
        store, meta = self.store_path(bot), self.metadata_path(bot)
        if not store.exists() and not meta.exists():
            return None
        directory = store.parent
        stamp = self._new_stamp(directory)
        ext = ".sqlite3" if store.name == NEONIZE_STORE else ".json"
        store_copy = meta_copy = None
        if store.exists():
            store_copy = directory / f"{BACKUP_PREFIX}{stamp}{ext}"
            if ext == ".sqlite3":
                copy_sqlite(store, store_copy)
            else:
                write_atomic(store_copy, store.read_bytes())
            follow_owner(store_copy, directory)
        if meta.exists():
            meta_copy = directory / f"{BACKUP_PREFIX}{stamp}.metadata.json"
            write_atomic(meta_copy, meta.read_bytes())
            follow_owner(meta_copy, directory)
        app_copy = None
        if (directory / APP_STATE).exists():
            app_copy = directory / f"{BACKUP_PREFIX}{stamp}.{APP_STATE}"
            copy_sqlite(directory / APP_STATE, app_copy)
            follow_owner(app_copy, directory)
        self._prune(bot, keep_stamps + (stamp,))
        return Backup(stamp, store_copy, meta_copy, app_copy)

    def list_backups(self, bot: Any) -> list[Backup]:
        """The bot's backups, newest first."""
        directory = self.bot_dir(bot)
        if not directory.is_dir():
            return []
        found: dict[str, dict[str, Path]] = {}
        for path in directory.glob(BACKUP_PREFIX + "*"):
            parts = path.name[len(BACKUP_PREFIX):].split(".")  # <date>T<time> . <micros>Z . <ext...>
            stamp, tail = ".".join(parts[:2]), ".".join(parts[2:])
            if path.is_symlink() or tail not in ("sqlite3", "json", "metadata.json", APP_STATE):
                continue
            try:
                datetime.strptime(stamp, STAMP_FORMAT)
            except ValueError:
                continue
            part = {"metadata.json": "metadata", APP_STATE: "app_state"}.get(tail, "store")
            found.setdefault(stamp, {})[part] = path
        return [Backup(s, f.get("store"), f.get("metadata"), f.get("app_state"))
                for s, f in sorted(found.items(), reverse=True)]

    def _prune(self, bot: Any, protect: tuple[str, ...]) -> None:
        for old in self.list_backups(bot)[self.backup_keep:]:
            if old.stamp not in protect:
                for path in old.files:
                    path.unlink(missing_ok=True)

    @staticmethod
    def _new_stamp(directory: Path) -> str:
        moment = datetime.now(timezone.utc)
        while True:  # two backups in one microsecond must not share a name
            stamp = moment.strftime(STAMP_FORMAT)
            if not any(directory.glob(f"{BACKUP_PREFIX}{stamp}.*")):
                return stamp
            moment = moment.fromtimestamp(moment.timestamp() + 1e-6, timezone.utc)

    # -- directories and statistics -------------------------------------------------------
    def get_all_bot_dirs(self, server_name: str | None = None) -> list[Path]:
        """Every ``bot_<id>`` directory of the server (symlinks and invalid names skipped)."""
        base = self.auth_root / (server_name or self.server_name)
        if not base.is_dir():
            return []
        return sorted(p for p in base.iterdir() if p.name.startswith("bot_") and valid_name(p.name[4:])
                      and p.is_dir() and not p.is_symlink())

    def get_credential_stats(self, server_name: str | None = None) -> dict[str, Any]:
        """Per server: bots, paired, verified, expired, total bytes, backups and the newest backup."""
        server = server_name or self.server_name
        manager = self if server == self.server_name else CredentialsManager(
            self.auth_root, server, backup_keep=self.backup_keep, expiry_days=self.expiry_days)
        stats: dict[str, Any] = {"server": server, "bots": 0, "paired": 0, "verified": 0, "expired": 0,
                                 "total_bytes": 0, "backups": 0, "newest_backup": None}
        newest: str | None = None
        for directory in manager.get_all_bot_dirs():
            bot_id = directory.name[4:]
            stats["bots"] += 1
            stats["paired"] += manager.has_credentials(bot_id)
            try:
                meta = manager.get_credential_metadata(bot_id)
            except CredentialsError:
                meta = None
            stats["verified"] += bool(meta and meta.verified)
            stats["expired"] += manager.is_credential_expired(bot_id)
            stats["total_bytes"] += sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
            backups = manager.list_backups(bot_id)
            stats["backups"] += len(backups)
            if backups and (newest is None or backups[0].stamp > newest):
                newest = backups[0].stamp
        if newest is not None:
            stats["newest_backup"] = datetime.strptime(newest, STAMP_FORMAT).replace(
                tzinfo=timezone.utc).isoformat(timespec="seconds")
        return stats

    def clear_cache(self, bot_id: str | None = None) -> None:
        """Forget what was read for ``bot_id`` (every bot when None). The cache also checks each file's
        inode, size and mtime, so it never serves a file that changed on disk."""
        if bot_id is None:
            self._cache.clear()
        else:
            for key in (f"creds:{bot_id}", f"meta:{bot_id}"):
                self._cache.pop(key, None)

    def _cached(self, key: str, path: Path, read: Any) -> Any:
        try:
            st = path.stat()
        except FileNotFoundError:
            self._cache.pop(key, None)
            return None
        fingerprint = (st.st_ino, st.st_size, st.st_mtime_ns)
        hit = self._cache.get(key)
        if hit is not None and hit[0] == fingerprint:
            return hit[1]
        value = read(path)
        self._cache[key] = (fingerprint, value)
        return value

    def _ensure_dir(self, directory: Path) -> None:
        check_bot_dir(directory, self.auth_root)
        if not directory.exists():
            ensure_private_dir(directory)

