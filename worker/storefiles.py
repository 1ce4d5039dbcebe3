"""File-level checks and copies for session stores: SQLite integrity, JSON parse, atomic copies."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from .atomic import fsync_dir


def check_sqlite(path: Path) -> str | None:
    """None when ``path`` is a sound SQLite database, else what is wrong. Opens read-write, so a hot
    journal left by a killed writer is rolled back first (only call it on a store nobody writes)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=10)
    except sqlite3.Error as exc:
        return f"cannot open: {exc}"
    try:
        rows = [r[0] for r in db.execute("PRAGMA integrity_check")]
        return None if rows == ["ok"] else "integrity check failed: " + "; ".join(map(str, rows[:3]))
    except sqlite3.Error as exc:
        return str(exc)
    finally:
        db.close()


def check_json(path: Path) -> str | None:
    try:
        json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not valid JSON: {exc}"
    return None


def copy_sqlite(source: Path | sqlite3.Connection, target: Path) -> None:
    """Copy a SQLite database to ``target`` atomically with the online backup API (consistent even
    while another process writes the source: the copy restarts until it sees one snapshot)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    src = source if isinstance(source, sqlite3.Connection) else \
        sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst, pages=-1, sleep=0.05)
            dst.execute("PRAGMA journal_mode=DELETE")  # a copy stands alone: no -wal to carry along
        finally:
            dst.close()
        with open(tmp, "rb+") as out:
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        if src is not source:
            src.close()
    fsync_dir(target.parent)
