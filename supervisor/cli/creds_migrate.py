"""``botvisor creds migrate``: bring existing sessions into auth/<server>/bot_<id>/.

Sources, in one directory: neonize/whatsmeow session files named by bot id (``<id>.sqlite3`` or
``<id>.db``), and ``bot_<id>/`` folders of an older layout (copied file by file). Nothing is
overwritten: a bot that already has a session is skipped, and so is any file already there.
The source is only read (SQLite files are opened read-only and copied with the backup API).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from protocol import valid_name
from worker.atomic import write_atomic
from worker.botdir import LOCK_FILE, follow_owner
from worker.credentials import (
    JSON_STORE,
    NEONIZE_STORE,
    CredentialsError,
    CredentialsManager,
)
from worker.errors import WorkerExit
from worker.storefiles import copy_sqlite

SQLITE_SUFFIXES = (".sqlite3", ".db")


@dataclass(frozen=True, slots=True)
class Fate:
    source: Path
    fate: str
    #: True when it was (or, in a dry run, would be) imported
    ok: bool = False


def readonly_check(path: Path) -> str | None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            rows = [r[0] for r in db.execute("PRAGMA integrity_check")]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None if rows == ["ok"] else "integrity check failed: " + "; ".join(map(str, rows[:3]))


def migrate(manager: CredentialsManager, source: str | Path, *, apply: bool) -> list[Fate]:
    source = Path(source)
    if not source.is_dir():
        raise CredentialsError(f"{source} is not a directory")
    return [_one(manager, entry, apply) for entry in sorted(source.iterdir())]


def _one(manager: CredentialsManager, entry: Path, apply: bool) -> Fate:
    try:
        return _judge(manager, entry, apply)
    except (CredentialsError, WorkerExit, OSError, sqlite3.Error) as exc:
        return Fate(entry, f"failed: {exc}")


def _judge(manager: CredentialsManager, entry: Path, apply: bool) -> Fate:
    if entry.is_symlink():
        return Fate(entry, "skipped: a symlink (not followed)")
    if entry.is_file() and entry.suffix in SQLITE_SUFFIXES:
        return _sqlite_file(manager, entry, entry.stem, apply)
    if entry.is_dir() and entry.name.startswith("bot_"):
        return _old_folder(manager, entry, entry.name[4:], apply)
    return Fate(entry, "ignored: neither <id>.sqlite3/<id>.db nor a bot_<id>/ folder")


def _existing(manager: CredentialsManager, bot_id: str) -> str | None:
    directory = manager.bot_dir(bot_id)
    for name in (NEONIZE_STORE, JSON_STORE):
        if (directory / name).exists():
            return f"skipped: {directory / name} already exists (never overwritten)"
    return None


def _sqlite_file(manager: CredentialsManager, path: Path, bot_id: str, apply: bool) -> Fate:
    if not valid_name(bot_id):
        return Fate(path, f"skipped: {bot_id!r} is not a valid bot id")
    if (why := readonly_check(path)) is not None:
        return Fate(path, f"skipped: not a sound SQLite database ({why})")
    if (taken := _existing(manager, bot_id)) is not None:
        return Fate(path, taken)
    target = manager.bot_dir(bot_id) / NEONIZE_STORE
    if not apply:
        return Fate(path, f"would import as {target}", True)
    bot = SimpleNamespace(id=bot_id, backend="neonize", phone_number=None)
    manager.save_credentials(bot, path)
    device = manager.load_credentials(bot)
    manager.update_metadata(bot, verified=bool(device), phone_number=_phone(device))
    return Fate(path, f"imported as {target}" + ("" if device else " (never paired: no device in it)"), True)


def _old_folder(manager: CredentialsManager, folder: Path, bot_id: str, apply: bool) -> Fate:
    if not valid_name(bot_id):
        return Fate(folder, f"skipped: {bot_id!r} is not a valid bot id")
    files = [p for p in sorted(folder.iterdir()) if p.is_file() and not p.is_symlink() and p.name != LOCK_FILE]
    stores = [p for p in files if p.name in (NEONIZE_STORE, JSON_STORE)]
    if not stores:
        return Fate(folder, f"skipped: no {NEONIZE_STORE} or {JSON_STORE} in it")
    for store in stores:
        if store.name == NEONIZE_STORE and (why := readonly_check(store)) is not None:
            return Fate(folder, f"skipped: {store.name} is not a sound SQLite database ({why})")
    if (taken := _existing(manager, bot_id)) is not None:
        return Fate(folder, taken)
    target = manager.bot_dir(bot_id)
    if not apply:
        return Fate(folder, f"would copy {len(files)} file(s) into {target}", True)
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    copied, kept = 0, []
    for path in files:
        dest = target / path.name
        if dest.exists():
            kept.append(path.name)
            continue
        if path.suffix in SQLITE_SUFFIXES:
            copy_sqlite(path, dest)
        else:
            write_atomic(dest, path.read_bytes())
        follow_owner(dest, target)
        copied += 1
    manager.clear_cache(bot_id)
    if manager.get_credential_metadata(bot_id) is None:
        device = manager.load_credentials(bot_id) if (target / NEONIZE_STORE).exists() else None
        manager.update_metadata(bot_id, verified=manager.has_credentials(bot_id), phone_number=_phone(device))
    note = f"; kept existing {', '.join(kept)}" if kept else ""
    return Fate(folder, f"imported {copied} file(s) into {target}{note}", True)


def _phone(device: Any) -> str | None:
    """The phone number in whatsmeow's device JID (``15551234567.0:12@s.whatsapp.net``)."""
    jid = (device or {}).get("jid") if isinstance(device, dict) else None
    if not jid:
        return None
    user = jid.split("@", 1)[0].split(":", 1)[0].split(".", 1)[0]
    return user if user.isdigit() else None
