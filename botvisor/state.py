"""Conversation state that outlives the worker: key/value stores and dialogs, in SQLite.

One database per bot, ``app-state.sqlite3`` in the bot's own directory (0600), written in WAL
mode with ``synchronous=FULL``: every ``set``/``goto`` is one committed transaction, so what a
handler stored is on disk before the handler goes on, and a SIGKILL loses nothing committed.
Values are JSON (plain data: dicts, lists, strings, numbers, booleans, None).

Scopes: ``ctx.state.bot`` is shared by the whole bot; ``ctx.state.user`` belongs to one sender
in one chat (the same person in a group and in private has two). ``ctx.dialog`` is the sender's
conversation step in this chat, a small state machine (aiogram's FSM, python-telegram-bot's
ConversationHandler): a step name, its data, and an optional deadline.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, MutableMapping

STATE_FILE = "app-state.sqlite3"
_MISSING = object()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    scope TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dialogs (
    chat TEXT NOT NULL, sender TEXT NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL,
    expires_at REAL,
    PRIMARY KEY (chat, sender)
) WITHOUT ROWID;
"""


class StateError(Exception):
    """A value that cannot be stored (not plain data), or a database that cannot be used."""


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StateError(f"state values must be plain JSON data: {exc}") from None


class StateDB:
    """The bot's state database; thread-safe (handlers may be threads), one connection."""

    def __init__(self, path: Path, clock: Callable[[], float]) -> None:
        self.path = Path(path)
        self.clock = clock
        self._lock = threading.Lock()
        fresh = not self.path.exists()
        if fresh:  # created private before SQLite opens it, whatever the umask
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{self.path}: cannot open the app state database: {exc}") from None
        for suffix in ("", "-wal", "-shm"):  # WAL side files are created with the process umask
            side = Path(f"{self.path}{suffix}")
            if side.exists():
                os.chmod(side, 0o600)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- key/value ----------------------------------------------------------------------
    def get(self, scope: str, key: str) -> Any:
        rows = self._run("SELECT value FROM kv WHERE scope = ? AND key = ?", (scope, key))
        return json.loads(rows[0][0]) if rows else _MISSING

    def set(self, scope: str, key: str, value: Any) -> None:
        self._run("INSERT OR REPLACE INTO kv (scope, key, value) VALUES (?, ?, ?)", (scope, key, _dump(value)))

    def delete(self, scope: str, key: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM kv WHERE scope = ? AND key = ?", (scope, key)).rowcount > 0

    def keys(self, scope: str) -> list[str]:
        return [row[0] for row in self._run("SELECT key FROM kv WHERE scope = ? ORDER BY key", (scope,))]

    def clear(self, scope: str) -> None:
        self._run("DELETE FROM kv WHERE scope = ?", (scope,))

    # -- dialogs ------------------------------------------------------------------------
    def dialog(self, chat: str, sender: str) -> tuple[str, dict[str, Any]] | None:
        rows = self._run("SELECT state, data, expires_at FROM dialogs WHERE chat = ? AND sender = ?", (chat, sender))
        if not rows:
            return None
        state, data, expires_at = rows[0]
        if expires_at is not None and self.clock() >= expires_at:
            self.end_dialog(chat, sender)  # timed out: as if it had never started
            return None
        return state, json.loads(data)

    def set_dialog(self, chat: str, sender: str, state: str, data: dict[str, Any], timeout: float | None) -> None:
        expires = self.clock() + timeout if timeout is not None else None
        self._run("INSERT OR REPLACE INTO dialogs (chat, sender, state, data, expires_at) VALUES (?, ?, ?, ?, ?)",
                  (chat, sender, state, _dump(data), expires))

    def end_dialog(self, chat: str, sender: str) -> None:
        self._run("DELETE FROM dialogs WHERE chat = ? AND sender = ?", (chat, sender))


class Store(MutableMapping[str, Any]):
    """One scope's key/value store: a dict whose every write is committed at once.

    ``store["k"] = v`` / ``store.get("k", default)`` / ``del store["k"]``; a value read back is a
    fresh copy, so change it and assign it again to store the change.
    """

    def __init__(self, db: StateDB, scope: str) -> None:
        self._db, self._scope = db, scope

    def __getitem__(self, key: str) -> Any:
        value = self._db.get(self._scope, key)
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise StateError(f"state keys are strings, got {type(key).__name__}")
        self._db.set(self._scope, key, value)

    def __delitem__(self, key: str) -> None:
        if not self._db.delete(self._scope, key):
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._db.keys(self._scope))

    def __len__(self) -> int:
        return len(self._db.keys(self._scope))

    def clear(self) -> None:
        self._db.clear(self._scope)

    def __repr__(self) -> str:
        return f"<Store {self._scope}: {dict(self)!r}>"


class State:
    """``ctx.state``: the bot's store and this sender's store in this chat."""

    def __init__(self, db: StateDB, chat: str | None, sender: str | None) -> None:
        self._db = db
        self.bot = Store(db, "bot")
        self._user_scope = f"user:{chat}:{sender}" if chat and sender else None

    @property
    def user(self) -> Store:
        if self._user_scope is None:
            raise StateError("this event has no chat and sender: use ctx.state.bot")
        return Store(self._db, self._user_scope)


class Dialog:
    """``ctx.dialog``: the sender's step in a multi-step conversation in this chat.

    ``goto("address", timeout=300, pizza="margherita")`` moves to a step (merging data),
    ``state`` is the current step (None: no dialog), ``data`` its data, ``end()`` finishes it.
    Handlers pick a step with ``filters.state("address")``. A dialog past its timeout ends by
    itself: the next message is handled as if no dialog had begun.
    """

    def __init__(self, db: StateDB | None, chat: str | None, sender: str | None) -> None:
        self._db, self._chat, self._sender = db, chat, sender
        self._cached: tuple[str, dict[str, Any]] | None | object = _MISSING

    def _current(self) -> tuple[str, dict[str, Any]] | None:
        if self._db is None or not self._chat or not self._sender:
            return None
        if self._cached is _MISSING:
            self._cached = self._db.dialog(self._chat, self._sender)
        return self._cached  # type: ignore[return-value]

    def _need_scope(self) -> StateDB:
        if self._db is None or not self._chat or not self._sender:
            raise StateError("dialogs need a message (a chat and a sender)")
        return self._db

    @property
    def state(self) -> str | None:
        current = self._current()
        return current[0] if current else None

    @property
    def data(self) -> dict[str, Any]:
        current = self._current()
        return dict(current[1]) if current else {}

    def goto(self, state: str, *, timeout: float | None = None, **data: Any) -> None:
        if not isinstance(state, str) or not state:
            raise StateError("a dialog step is a non-empty string")
        db = self._need_scope()
        merged = {**self.data, **data}
        db.set_dialog(self._chat, self._sender, state, merged, timeout)  # type: ignore[arg-type]
        self._cached = (state, merged)

    def update(self, **data: Any) -> None:
        """Merge ``data`` into the current step's data (keeps the step and its deadline)."""
        current = self._current()
        if current is None:
            raise StateError("no dialog in progress: call goto() first")
        db = self._need_scope()
        rows = db._run("SELECT expires_at FROM dialogs WHERE chat = ? AND sender = ?", (self._chat, self._sender))
        left = rows[0][0] - db.clock() if rows and rows[0][0] is not None else None
        self.goto(current[0], timeout=left, **data)

    def end(self) -> dict[str, Any]:
        """Finish the dialog; returns its data."""
        data = self.data
        self._need_scope().end_dialog(self._chat, self._sender)  # type: ignore[arg-type]
        self._cached = None
        return data
