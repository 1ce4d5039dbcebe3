"""Leases in PostgreSQL: one row per bot, held by one shard process at a time, with a fencing token.

The database decides ownership; its clock alone judges expiry (``now()`` in every statement), so
the shards' clocks never have to agree with each other. A lease is free when released (owner
NULL) or when its ``expires_at`` has passed; taking it adds one to its token. The token fences
the writes that outlive a holder: a snapshot is stored, and a lease released, only under the
exact token the writer holds (a row lock makes the check and the write one step), so a shard
that lost its lease cannot overwrite what the next holder relies on.

Every statement is short and autocommitted; the caller (keeper.py) owns the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

SCHEMA = """
CREATE TABLE IF NOT EXISTS botvisor_lease (
    server      text        NOT NULL,
    bot         text        NOT NULL,
    owner       text,                   -- '<shard>/<incarnation>'; NULL once released
    shard       integer,
    token       bigint      NOT NULL,   -- fencing token: one more at every acquisition
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL,
    renewed_at  timestamptz,
    PRIMARY KEY (server, bot)
);
CREATE TABLE IF NOT EXISTS botvisor_snapshot (
    server   text        NOT NULL,
    bot      text        NOT NULL,
    token    bigint      NOT NULL,      -- the lease it was taken under
    shard    integer     NOT NULL,
    taken_at timestamptz NOT NULL,
    sha256   text        NOT NULL,
    size     integer     NOT NULL,
    data     bytea       NOT NULL,      -- a tar.gz of the bot's directory (handover.py)
    PRIMARY KEY (server, bot)
);
"""
#: pg_advisory_xact_lock key serialising schema creation (shards boot at once)
SCHEMA_LOCK = 0x626F7476  # "botv"
#: NOTIFY channel: a lease was released (payload ``<server>/<bot>``), so a waiting shard takes it now
RELEASED_CHANNEL = "botvisor_lease_released"


class LeaseLost(Exception):
    """The lease is no longer this holder's (expired and taken, or released)."""


@dataclass(frozen=True)
class Snapshot:
    token: int
    shard: int
    sha256: str
    data: bytes


@dataclass(frozen=True)
class Holder:
    bot: str
    owner: str | None
    shard: int | None
    token: int
    #: seconds until expiry by the database's clock (negative: expired)
    expires_in: float


class LeaseStore:
    """The lease statements of one shard process (``owner``) on one connection."""

    def __init__(self, conn: Any, server: str, owner: str, shard: int, ttl: float) -> None:
        self.conn, self.server, self.owner, self.shard, self.ttl = conn, server, owner, shard, ttl

    def ensure_schema(self) -> None:
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            self.conn.execute(SCHEMA)

    def acquire(self, bots: Iterable[str]) -> dict[str, int]:
        """Take every lease in ``bots`` that is free (or already ours); bot -> its new token."""
        rows = self.conn.execute(
            """INSERT INTO botvisor_lease AS l (server, bot, owner, shard, token, expires_at, acquired_at)
               SELECT %(server)s, b, %(owner)s, %(shard)s, 1, now() + make_interval(secs => %(ttl)s), now()
               FROM unnest(%(bots)s::text[]) AS b
               ON CONFLICT (server, bot) DO UPDATE
                 SET owner = excluded.owner, shard = excluded.shard, token = l.token + 1,
                     expires_at = excluded.expires_at, acquired_at = excluded.acquired_at, renewed_at = NULL
                 WHERE l.owner IS NULL OR l.expires_at < now() OR l.owner = excluded.owner
               RETURNING l.bot, l.token""",
            {"server": self.server, "owner": self.owner, "shard": self.shard, "ttl": self.ttl,
             "bots": list(bots)}).fetchall()
        return {bot: token for bot, token in rows}

    def renew(self, bots: Iterable[str]) -> set[str]:
        """Extend our leases on ``bots`` by ttl from the database's now; the ones still ours."""
        rows = self.conn.execute(
            """UPDATE botvisor_lease SET expires_at = now() + make_interval(secs => %s), renewed_at = now()
               WHERE server = %s AND owner = %s AND bot = ANY(%s) AND expires_at >= now()
               RETURNING bot""", (self.ttl, self.server, self.owner, list(bots))).fetchall()
        return {bot for (bot,) in rows}

    def release(self, bot: str, token: int, snapshot: tuple[str, bytes] | None) -> None:
        """Store the snapshot (sha256, data) and free the lease, both under ``token`` or neither."""
        with self.conn.transaction():
            held = self.conn.execute(
                "SELECT 1 FROM botvisor_lease WHERE server = %s AND bot = %s AND owner = %s AND token = %s "
                "AND expires_at >= now() FOR UPDATE", (self.server, bot, self.owner, token)).fetchone()
            if held is None:
                raise LeaseLost(f"{bot}: lease {token} is no longer held by {self.owner}")
            if snapshot is not None:
                digest, data = snapshot
                self.conn.execute(
                    """INSERT INTO botvisor_snapshot (server, bot, token, shard, taken_at, sha256, size, data)
                       VALUES (%s, %s, %s, %s, now(), %s, %s, %s)
                       ON CONFLICT (server, bot) DO UPDATE SET token = excluded.token, shard = excluded.shard,
                         taken_at = excluded.taken_at, sha256 = excluded.sha256, size = excluded.size,
                         data = excluded.data""", (self.server, bot, token, self.shard, digest, len(data), data))
            self.conn.execute("UPDATE botvisor_lease SET owner = NULL, expires_at = now() "
                              "WHERE server = %s AND bot = %s", (self.server, bot))
            self.conn.execute("SELECT pg_notify(%s, %s)", (RELEASED_CHANNEL, f"{self.server}/{bot}"))  # at commit

    def snapshot(self, bot: str) -> Snapshot | None:
        row = self.conn.execute("SELECT token, shard, sha256, data FROM botvisor_snapshot "
                                "WHERE server = %s AND bot = %s", (self.server, bot)).fetchone()
        return None if row is None else Snapshot(row[0], row[1], row[2], bytes(row[3]))

    def holders(self) -> list[Holder]:
        rows = self.conn.execute(
            "SELECT bot, owner, shard, token, extract(epoch FROM expires_at - now())::float8 "
            "FROM botvisor_lease WHERE server = %s ORDER BY bot", (self.server,)).fetchall()
        return [Holder(*row) for row in rows]
