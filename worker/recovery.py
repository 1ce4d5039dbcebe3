"""Restoring a bot's credentials from its backups, and the check a worker runs before it connects.

A corrupted file is never deleted: it is renamed ``<name>.corrupt.<UTC stamp>`` next to where it
was, and the newest backup that passes the same check takes its place. Both functions expect
the caller to hold the bot directory's lock (no worker is using the store).
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from protocol import ErrorEvent, EventData

from .atomic import fsync_dir, write_atomic
from .botdir import follow_owner
from .credentials import (
    APP_STATE,
    NEONIZE_STORE,
    SIDECARS,
    STAMP_FORMAT,
    Backup,
    CredentialMetadata,
    CredentialsError,
    CredentialsManager,
)
from .errors import FatalBotError
from .storefiles import check_json, check_sqlite, copy_sqlite

log = logging.getLogger("botvisor.worker.credentials")
#: a temporary file this old was left by a writer that died; younger ones may be in use (a CLI backup)
STALE_TMP_SECONDS = 300


def check_store(path: Path) -> str | None:
    """None when the store (SQLite or JSON, by name) is sound, else why not."""
    return check_sqlite(path) if path.name.endswith(".sqlite3") else check_json(path)


def check_metadata(path: Path) -> str | None:
    try:
        CredentialMetadata.from_json(json.loads(path.read_bytes()))
    except (ValueError, UnicodeDecodeError) as exc:
        return f"not valid metadata: {exc}"
    return None


def set_aside(path: Path, label: str) -> Path | None:
    """Rename ``path`` (and its SQLite companions) to ``<name>.<label>.<stamp>``; never delete."""
    if not os.path.lexists(path):
        return None
    stamp = datetime.now(timezone.utc).strftime(STAMP_FORMAT)
    target = path.with_name(f"{path.name}.{label}.{stamp}")
    os.rename(path, target)
    for suffix in SIDECARS:
        companion = Path(f"{path}{suffix}")
        if companion.exists():
            os.rename(companion, companion.with_name(f"{companion.name}.{label}.{stamp}"))
    fsync_dir(path.parent)
    return target


def newest_good_backup(manager: CredentialsManager, bot: Any, part: str = "store") -> Backup | None:
    for backup in manager.list_backups(bot):
        path = backup.store if part == "store" else backup.metadata
        if path is None:
            continue
        why = check_store(path) if part == "store" else check_metadata(path)
        if why is None:
            return backup
        log.warning("backup %s is unusable: %s", path, why)
    return None


def choose_backup(manager: CredentialsManager, bot: Any, stamp: str | None = None) -> Backup:
    """The backup ``restore_backup`` would put in place, checked; CredentialsError saying why not.

    Asked before anything is done (stopping the bot included), so a bad stamp changes nothing.
    """
    backups = manager.list_backups(bot)
    if stamp is None:
        chosen = newest_good_backup(manager, bot)
        if chosen is None:
            raise CredentialsError(f"{manager.bot_dir(bot)}: no usable backup to restore")
    else:
        chosen = next((b for b in backups if b.stamp == stamp or (b.store and b.store.name == stamp)), None)
        if chosen is None:
            known = ", ".join(b.stamp for b in backups) or "none"
            raise CredentialsError(f"{manager.bot_dir(bot)}: no backup {stamp!r} (backups: {known})")
        if chosen.store is not None and (why := check_store(chosen.store)) is not None:
            raise CredentialsError(f"{chosen.store}: {why}; choose another backup", chosen.store)
    store = manager.store_path(bot)
    if chosen.store is not None and chosen.store.name.endswith(".sqlite3") != (store.name == NEONIZE_STORE):
        raise CredentialsError(f"{chosen.store} does not match this bot's {store.name} store", chosen.store)
    return chosen


def restore_backup(manager: CredentialsManager, bot: Any, stamp: str | None = None, *,
                   app_state: bool = True) -> Backup:
    """Put backup ``stamp`` (default: the newest good one) in place of the store and metadata.

    A sound current store is backed up first (it joins the rotation); a corrupt one is set aside.
    """
    chosen = choose_backup(manager, bot, stamp)
    store, meta = manager.store_path(bot), manager.metadata_path(bot)
    store_ok = store.exists() and check_store(store) is None
    meta_ok = not meta.exists() or check_metadata(meta) is None
    if store_ok and meta_ok:
        manager.backup_credentials(bot, keep_stamps=(chosen.stamp,))
    else:
        if store.exists() and not store_ok:
            set_aside(store, "corrupt")
        if not meta_ok:
            set_aside(meta, "corrupt")
    if chosen.store is not None:
        if store.name == NEONIZE_STORE:
            for suffix in SIDECARS:  # the old store's -wal must not be replayed onto the restored one
                set_aside(Path(f"{store}{suffix}"), "replaced")
            copy_sqlite(chosen.store, store)
        else:
            write_atomic(store, chosen.store.read_bytes())
        follow_owner(store, store.parent)
    if chosen.metadata is not None and check_metadata(chosen.metadata) is None:
        write_atomic(meta, chosen.metadata.read_bytes())
        follow_owner(meta, meta.parent)
    if app_state and chosen.app_state is not None:
        restore_app_state(store.parent, chosen.app_state)
    manager.clear_cache(manager.bot_id(bot))
    return chosen


def restore_app_state(directory: Path, copy: Path) -> None:
    """Put a backed-up app state database in place (its old -wal must not be replayed onto it)."""
    target = directory / APP_STATE
    for suffix in SIDECARS:
        set_aside(Path(f"{target}{suffix}"), "replaced")
    copy_sqlite(copy, target)
    follow_owner(target, directory)


def check_app_state(manager: CredentialsManager, bot: Any, emit: Callable[[EventData], None]) -> None:
    """A corrupt app state database is set aside and the newest good backup of it put back (or, with
    none, the app starts with empty state); the session is left alone either way."""
    directory = manager.bot_dir(bot)
    path = directory / APP_STATE
    if not path.exists() or (why := check_sqlite(path)) is None:
        return
    good = next((b for b in manager.list_backups(bot) if b.app_state and check_sqlite(b.app_state) is None), None)
    set_aside(path, "corrupt")
    if good is None:
        emit(ErrorEvent(code="corrupt-store", message=f"{path} is corrupt ({why}) and has no good backup; "
                        "the app starts with empty state (the corrupt file is kept beside it)", file=str(path)))
        return
    emit(ErrorEvent(code="corrupt-store", message=f"{path} is corrupt ({why}); restoring backup {good.stamp}",
                    file=str(path)))
    restore_app_state(directory, good.app_state)  # type: ignore[arg-type]


def remove_stale_tmp(directory: Path) -> None:
    """Delete temporary files of atomic writes whose writer died (they are never the real file)."""
    cutoff = time.time() - STALE_TMP_SECONDS
    for path in directory.glob(".*.tmp"):
        try:
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
        except FileNotFoundError:
            pass


def check_at_start(manager: CredentialsManager, bot: Any, emit: Callable[[EventData], None]) -> None:
    """Before the backend starts: verify the store and metadata, restore or stop, note expiry, back up.

    A corrupt file: an error event naming it, then the newest good backup replaces it (the file
    is set aside); with no good backup, FatalBotError (the worker exits 78 and is not restarted).
    """
    directory = manager.bot_dir(bot)
    remove_stale_tmp(directory)
    store, meta = manager.store_path(bot), manager.metadata_path(bot)
    for path, check, part in ((store, check_store, "store"), (meta, check_metadata, "metadata")):
        if not path.exists():
            continue
        why = check(path)
        if why is None:
            continue
        backup = newest_good_backup(manager, bot, part)
        if backup is None:
            raise FatalBotError("corrupt-store", f"{path} is corrupt ({why}) and {directory} holds no good backup; "
                                f"move the file away to start unpaired, or restore one by hand", file=str(path))
        emit(ErrorEvent(code="corrupt-store", message=f"{path} is corrupt ({why}); restoring backup {backup.stamp}",
                        file=str(path)))
        if part == "store":
            restore_backup(manager, bot, backup.stamp, app_state=False)  # the app's newer state stays
        else:
            set_aside(path, "corrupt")
            write_atomic(path, backup.metadata.read_bytes())  # type: ignore[union-attr]
            follow_owner(path, directory)
            manager.clear_cache(manager.bot_id(bot))
        meta_now = manager.get_credential_metadata(bot)
        emit(manager.record(bot, "restored", verified=bool(meta_now and meta_now.verified)))
    if meta.exists() and manager.is_credential_expired(bot):
        emit(manager.record(bot, "expired", verified=False))
    check_app_state(manager, bot, emit)
    if store.exists():  # back up what changed since the newest backup (a WAL store changes in its -wal)
        app = directory / APP_STATE
        files = [store, *(Path(f"{store}{s}") for s in SIDECARS), app, *(Path(f"{app}{s}") for s in SIDECARS)]
        changed = max(p.stat().st_mtime for p in files if p.exists())
        backups = manager.list_backups(bot)
        if not backups or backups[0].created.timestamp() < changed:
            manager.backup_credentials(bot)


def check_worker_start(bot_dir: Path, bot: Any, emit: Callable[[EventData], None]) -> None:
    """The worker's one call (after locking its directory, before its backend starts)."""
    check_at_start(CredentialsManager.for_bot_dir(bot_dir), bot, emit)
