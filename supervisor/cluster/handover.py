"""A bot's whole directory, moved between shards through PostgreSQL.

The old owner, with the worker stopped (nothing writes), takes the existing backup
(CredentialsManager.backup_credentials: SQLite's online backup API, so the copy is consistent
even with a -wal beside the store) and packs the directory into a tar.gz; lease.release stores
it and frees the lease in one transaction. The new owner, holding the lease, unpacks it beside
the bot's directory, checks it (sha256 of the payload, PRAGMA integrity_check of every SQLite
file, every JSON file parses) and only then swaps it in. The directory it replaces is kept as
``bot_<id>.superseded`` (one, the latest): a move never deletes data.

Which copy is newest is decided by fencing tokens: the directory records the lease token it last
ran under (TOKEN_FILE); a snapshot carries the token it was taken under. The larger wins.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from worker.atomic import fsync_dir, write_atomic
from worker.botdir import LOCK_FILE, ensure_private_dir
from worker.credentials import CredentialsError, CredentialsManager
from worker.storefiles import check_json, check_sqlite

#: in the bot's directory: the lease token it last ran under
TOKEN_FILE = ".botvisor-lease"
SUPERSEDED = ".superseded"
#: never packed: the worker's lock (per host) and our own marker (per lease)
SKIPPED = (LOCK_FILE, TOKEN_FILE)


class HandoverError(Exception):
    """A snapshot that must not be restored (corrupt, wrong digest); the message says why."""


@dataclass(frozen=True)
class Packed:
    sha256: str
    data: bytes
    files: int


def local_token(bot_dir: Path) -> int | None:
    try:
        return int((bot_dir / TOKEN_FILE).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def mark(bot_dir: Path, token: int) -> None:
    """Record that this directory now runs under lease ``token``."""
    ensure_private_dir(bot_dir)
    write_atomic(bot_dir / TOKEN_FILE, f"{token}\n".encode())


def pack(bot_dir: Path, bot_id: str) -> Packed | None:
    """The directory as a tar.gz, after a fresh backup of its store; None when it does not exist.
    Only call it with the bot's worker stopped."""
    if not bot_dir.is_dir():
        return None
    try:
        CredentialsManager.for_bot_dir(bot_dir).backup_credentials(bot_id)
    except (CredentialsError, OSError) as exc:  # the directory still moves; the store check on restore decides
        raise HandoverError(f"{bot_dir}: cannot back the store up before packing: {exc}") from exc
    buffer = io.BytesIO()
    files = 0
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6) as tar:
        for path in sorted(bot_dir.rglob("*")):
            rel = path.relative_to(bot_dir)
            if rel.parts[0] in SKIPPED or path.is_symlink():
                continue
            tar.add(path, arcname=str(rel), recursive=False)
            files += path.is_file()
    data = buffer.getvalue()
    return Packed(hashlib.sha256(data).hexdigest(), data, files)


def check_tree(root: Path) -> list[str]:
    """What is wrong with an unpacked directory (empty: sound)."""
    problems = []
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        problem = check_sqlite(path) if path.suffix == ".sqlite3" else \
            check_json(path) if path.suffix == ".json" else None
        if problem:
            problems.append(f"{path.relative_to(root)}: {problem}")
    return problems


def restore(bot_dir: Path, sha256: str, data: bytes, token: int) -> int:
    """Replace ``bot_dir`` with a checked snapshot; returns the number of files restored.
    HandoverError (and ``bot_dir`` untouched) when the snapshot is not sound."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise HandoverError(f"{bot_dir.name}: snapshot digest mismatch: the stored bytes are not what was packed")
    parent = bot_dir.parent
    ensure_private_dir(parent)
    staging = parent / f".{bot_dir.name}.restoring.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    ensure_private_dir(staging)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            tar.extractall(staging, filter="data")  # no absolute paths, no '..', no devices
        problems = check_tree(staging)
        if problems:
            raise HandoverError(f"{bot_dir.name}: snapshot {token} fails its checks: {'; '.join(problems[:3])}")
        files = sum(1 for p in staging.rglob("*") if p.is_file())
        os.chmod(staging, 0o700)
        write_atomic(staging / TOKEN_FILE, f"{token}\n".encode())
        if bot_dir.exists():
            old = parent / (bot_dir.name + SUPERSEDED)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(bot_dir, old)
        os.replace(staging, bot_dir)
        fsync_dir(parent)
        return files
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@dataclass(frozen=True)
class Choice:
    """Which copy a new holder of lease ``token`` starts from, and why (for the log)."""

    restore: bool
    reason: str
    #: the copy chosen is not the previous holder's last state (it did not hand over)
    stale: bool


def choose(local: int | None, snapshot: int | None, token: int) -> Choice:
    previous = token - 1
    if snapshot is not None and (local is None or snapshot > local):
        stale = snapshot != previous
        return Choice(True, f"restoring the snapshot of lease {snapshot}"
                      + (f" (lease {previous} did not hand over: newer state may be on its host)" if stale else ""),
                      stale)
    if local is not None:
        stale = local != previous
        return Choice(False, f"keeping the local directory of lease {local}"
                      + (f" (lease {previous} ran elsewhere and did not hand over)" if stale else ""), stale)
    if token > 1:  # it ran before, under lease `previous`, and its holder left nothing behind
        return Choice(False, f"no directory and no snapshot: starting empty (lease {previous} did not hand over: "
                      "its state is on its host)", True)
    return Choice(False, "no directory and no snapshot: a fresh bot", False)


def describe(bot_dir: Path) -> dict[str, object]:
    """A fingerprint of a directory, for tests and `creds` tools: file -> sha256."""
    out: dict[str, object] = {}
    for path in sorted(bot_dir.rglob("*")):
        rel = path.relative_to(bot_dir)
        if path.is_file() and rel.parts[0] not in SKIPPED:
            out[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out
