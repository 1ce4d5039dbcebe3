"""The lease keeper: one thread, one PostgreSQL connection, every lease statement of a shard.

Database calls block, and the supervisor's loop must not, so they live here. The loop tells the
keeper what it wants (``want``, ``hand_over``, ``drop``); the keeper answers with results on a
queue and a byte on a socket the loop polls. The keeper never starts or stops a worker: the
loop does, from the results, and it alone enforces the deadlines (member.py), so a keeper stuck
in a statement on a dead network can delay nothing but its own renewals.

A renewal's deadline is measured from just before its statement was sent, on this host's
monotonic clock, while the database extends the lease from its own ``now()`` when the statement
runs, which is later: the shard's view of a lease always ends before the database's does.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from protocol.cluster_config import ClusterSettings

from . import handover
from .lease import RELEASED_CHANNEL, LeaseLost, LeaseStore

log = logging.getLogger("botvisor.cluster")

#: seconds between tries at leases held elsewhere; a release is also announced (LISTEN/NOTIFY),
#: which wakes the keeper at once: the poll only covers a lost notification or an expiry
ACQUIRE_POLL = 0.5
#: seconds between reconnection attempts while the database is unreachable
RECONNECT_S = 1.0


@dataclass(frozen=True)
class Acquired:
    bot: str
    token: int
    #: monotonic time the acquiring statement was sent: the lease is good until sent + ttl
    sent: float
    choice: str
    stale: bool


@dataclass(frozen=True)
class Renewed:
    bots: frozenset[str]
    sent: float


@dataclass(frozen=True)
class Lost:
    bot: str


@dataclass(frozen=True)
class Released:
    bot: str
    token: int
    files: int
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class Trouble:
    text: str


@dataclass
class _Wants:
    bots: set[str] = field(default_factory=set)
    handovers: dict[str, bool] = field(default_factory=dict)  # bot -> with a snapshot
    drops: set[str] = field(default_factory=set)


class LeaseKeeper:
    def __init__(self, settings: ClusterSettings, dsn: str, server: str, owner: str, shard: int,
                 bot_dir: Callable[[str], Path], connect: Callable[..., Any] | None = None) -> None:
        self.settings, self.dsn, self.server, self.owner, self.shard = settings, dsn, server, owner, shard
        self.bot_dir = bot_dir
        self._connect = connect
        self.results: queue.Queue[Any] = queue.Queue()
        self.wake_r, self._wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._lock = threading.Lock()
        self._wants = _Wants()
        self._kick = threading.Event()
        self._stopping = False
        self._conn: Any = None
        #: monotonic time the current statement began (None: idle); the loop interrupts a stuck one
        self.busy_since: float | None = None
        #: the last statement succeeded (read by the loop for `botvisor health --ready`)
        self.connected = False
        #: monotonic time the next renewal is due
        self._next_renew = 0.0
        #: bot -> token, as far as the keeper knows (it renews these)
        self._held: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, name="botvisor-lease-keeper", daemon=True)
        self._listener = threading.Thread(target=self._listen, name="botvisor-lease-listener", daemon=True)

    # -- from the loop ---------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()
        self._listener.start()

    def want(self, bots: set[str]) -> None:
        with self._lock:
            self._wants.bots = set(bots)
        self._kick.set()

    def hand_over(self, bot: str, snapshot: bool = True) -> None:
        """The bot's worker has stopped: pack its directory, store it, release the lease."""
        with self._lock:
            self._wants.bots.discard(bot)
            self._wants.handovers[bot] = snapshot
        self._kick.set()

    def drop(self, bot: str) -> None:
        """The loop stopped the bot because its lease ran out: forget it (re-acquire if still wanted)."""
        with self._lock:
            self._wants.drops.add(bot)
        self._kick.set()

    def interrupt(self) -> None:
        """Break a statement stuck on a dead network: shut the socket down under libpq."""
        conn = self._conn
        try:
            fd = conn.pgconn.socket if conn is not None else -1
        except Exception:
            return
        if fd < 0:
            return
        try:
            sock = socket.socket(fileno=os.dup(fd))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()
        except OSError:
            pass

    def close(self, timeout: float) -> bool:
        """Finish pending handovers (at most ``timeout`` s), then end the thread; False if it did not end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not self._wants.handovers:
                    break
            if not self._thread.is_alive():
                break
            time.sleep(0.02)
        self._stopping = True
        self._kick.set()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        if self._listener.is_alive():
            self._listener.join(2.0)  # it looks at _stopping at least every second
        self.wake_r.close()
        self._wake_w.close()
        return not self._thread.is_alive()

    # -- the thread --------------------------------------------------------------------------
    def _post(self, result: Any) -> None:
        self.results.put(result)
        try:
            self._wake_w.send(b"!")
        except OSError:  # full (the loop is behind: it drains the queue anyway) or closed
            pass

    def _open(self) -> LeaseStore:
        if self._conn is None or self._conn.closed:
            connect = self._connect
            if connect is None:
                import psycopg

                connect = psycopg.connect
            timeout = max(2, int(self.settings.renew_interval))
            self.busy_since = time.monotonic()
            try:
                # keepalives and tcp_user_timeout: a real partition breaks the socket instead of hanging it
                self._conn = connect(self.dsn, autocommit=True, connect_timeout=timeout,
                                     keepalives=1, keepalives_idle=5, keepalives_interval=2, keepalives_count=2,
                                     tcp_user_timeout=int(self.settings.lease_ttl * 1000),
                                     application_name=f"botvisor {self.owner}")
            finally:
                self.busy_since = None
            store = LeaseStore(self._conn, self.server, self.owner, self.shard, self.settings.lease_ttl)
            store.ensure_schema()
        return LeaseStore(self._conn, self.server, self.owner, self.shard, self.settings.lease_ttl)

    def _run(self) -> None:
        failing = False
        while not self._stopping:
            self._kick.clear()  # before reading the wants: a request made from here on is not lost
            try:
                store = self._open()
                if failing:
                    self._post(Trouble(f"database reachable again ({self.owner})"))
                    failing = False
                self._round(store)
                self.connected = True
                wait = self._next_wait(self._next_renew)
            except Exception as exc:  # psycopg.Error, OSError: the database is unreachable or refused us
                self.busy_since = None
                self.connected = False
                if not failing:
                    self._post(Trouble(f"database unreachable: {exc.__class__.__name__}: {str(exc).strip()}"))
                failing = True
                self._discard_connection()
                self._next_renew = 0.0
                wait = RECONNECT_S
            self._kick.wait(wait)
        self._discard_connection()

    def _listen(self) -> None:
        """Wake the keeper the moment a lease this shard waits for is released elsewhere."""
        prefix = f"{self.server}/"
        while not self._stopping:
            conn = None
            try:
                connect = self._connect
                if connect is None:
                    import psycopg

                    connect = psycopg.connect
                conn = connect(self.dsn, autocommit=True, connect_timeout=max(2, int(self.settings.renew_interval)),
                               application_name=f"botvisor {self.owner} listener")
                conn.execute(f"LISTEN {RELEASED_CHANNEL}")
                while not self._stopping:
                    for note in conn.notifies(timeout=1.0):
                        bot = note.payload[len(prefix):] if note.payload.startswith(prefix) else None
                        with self._lock:
                            wanted = bot in self._wants.bots
                        if wanted and bot not in self._held:
                            self._kick.set()
            except Exception:  # unreachable: the keeper reports it; the poll still finds releases
                time.sleep(RECONNECT_S)
            finally:
                if conn is not None:
                    try:
                        conn.close()
                    except Exception:
                        pass

    def _next_wait(self, next_renew: float) -> float:
        with self._lock:
            waiting = bool(self._wants.bots - set(self._held)) or bool(self._wants.handovers)
        left = max(0.0, next_renew - time.monotonic()) if self._held else self.settings.renew_interval
        return min(left, ACQUIRE_POLL) if waiting else left

    def _discard_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        self.busy_since = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.busy_since = None

    def _round(self, store: LeaseStore) -> None:
        with self._lock:
            handovers = dict(self._wants.handovers)
            drops, self._wants.drops = self._wants.drops, set()
            wanted = set(self._wants.bots)
        for bot in drops:
            self._held.pop(bot, None)
        self._renew_if_due(store)
        for bot, with_snapshot in handovers.items():
            self._release(store, bot, with_snapshot)
            with self._lock:
                self._wants.handovers.pop(bot, None)
            self._renew_if_due(store)  # many handovers (a shutdown) must not let the rest lapse
        missing = wanted - set(self._held) - set(handovers)
        if missing:
            sent = time.monotonic()
            got = self._timed(store.acquire, sorted(missing))
            for bot, token in got.items():
                self._held[bot] = token
                try:
                    taken = self._take(store, bot, token, sent)
                except BaseException:  # the loop never heard of it: forget it, take it again (next token)
                    self._held.pop(bot, None)
                    raise
                self._post(taken)
                self._renew_if_due(store)
            if got and time.monotonic() - sent > self.settings.renew_interval / 2:
                self._renew_if_due(store, now=True)  # restoring took a while: no bot starts on an aged lease

    def _renew_if_due(self, store: LeaseStore, now: bool = False) -> None:
        if not self._held or not (now or time.monotonic() >= self._next_renew):
            return
        sent = time.monotonic()
        self._next_renew = sent + self.settings.renew_interval
        kept = self._timed(store.renew, list(self._held))
        self._post(Renewed(frozenset(kept), sent))
        for bot in set(self._held) - kept:
            self._held.pop(bot)
            self._post(Lost(bot))

    def _take(self, store: LeaseStore, bot: str, token: int, sent: float) -> Acquired:
        """Just acquired: make the bot's directory the newest copy there is, then report."""
        directory = self.bot_dir(bot)
        local = handover.local_token(directory)
        snapshot = self._timed(store.snapshot, bot)
        choice = handover.choose(local, snapshot.token if snapshot else None, token)
        reason = choice.reason
        if choice.restore and snapshot is not None:
            try:
                files = handover.restore(directory, snapshot.sha256, snapshot.data, token)
                reason += f": {files} file(s) from shard {snapshot.shard}"
            except (handover.HandoverError, OSError) as exc:
                reason = f"snapshot {snapshot.token} NOT restored ({exc}); keeping the local directory"
                handover.mark(directory, token)
                return Acquired(bot, token, sent, reason, True)
        else:
            handover.mark(directory, token)
        return Acquired(bot, token, sent, reason, choice.stale)

    def _release(self, store: LeaseStore, bot: str, with_snapshot: bool) -> None:
        token = self._held.get(bot)
        if token is None:
            return
        began = time.monotonic()
        files, error = 0, None
        packed = None
        try:
            packed = handover.pack(self.bot_dir(bot), bot) if with_snapshot else None
            files = packed.files if packed else 0
        except (handover.HandoverError, OSError) as exc:  # release all the same: the bot must be able to move
            error = f"no snapshot stored: {exc}"
        try:
            self._timed(store.release, bot, token, (packed.sha256, packed.data) if packed else None)
        except LeaseLost as exc:
            error = str(exc)
        self._held.pop(bot, None)
        self._post(Released(bot, token, files, time.monotonic() - began, error))
