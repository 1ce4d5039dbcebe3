"""``[cluster]``: many hosts, one fleet (docs/cluster.md). Without the table nothing changes.

Every shard reads the same file. Placement of hosts is Kubernetes' (or systemd's) job,
ownership of a bot is PostgreSQL's: these settings only say how many shards there are, which
one this process is, where the database is and how long a lease lives.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from typing import Any

from .schema import checked, in_range

#: overrides ``shard = "auto"`` (a systemd host, or tests running shards side by side)
SHARD_ENV = "BOTVISOR_SHARD"
#: the DSN, when the file names no database (a Kubernetes Secret mapped to the environment)
DATABASE_ENV = "BOTVISOR_DATABASE"
_ORDINAL = re.compile(r"-(\d+)$")


def _shard(value: int | str) -> str | None:
    if isinstance(value, str) and value != "auto":
        return f'must be "auto" or a shard index, got {value!r}'
    if isinstance(value, int) and value < 0:
        return f"must be at least 0, got {value}"
    return None


def _template(value: str) -> str | None:
    try:
        value.format(shard=0)
    except (KeyError, IndexError, ValueError) as exc:
        return f"{value!r} must be an endpoint with at most a {{shard}} placeholder: {exc}"
    return None


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    #: how many shards share the fleet
    shards: int = checked(in_range(1, 4096), default=1)
    #: this process's shard: an index, or "auto" ($BOTVISOR_SHARD, else the hostname's
    #: trailing ordinal, as a StatefulSet names its pods: botvisor-2 -> 2)
    shard: int | str = checked(_shard, default="auto")
    #: the PostgreSQL DSN (None: $BOTVISOR_DATABASE)
    database: str | None = None
    #: seconds a lease lives unless renewed
    lease_ttl: float = checked(in_range(1, 3600), default=15.0)
    #: seconds between renewals (one statement renews every lease the shard holds)
    renew_interval: float = checked(in_range(0.1, 3600), default=3.0)
    #: a shard stops its bots this many seconds before its view of the lease runs out, so
    #: clock rates and the stop itself fit inside the lease (SIGTERM first, SIGKILL at the end)
    stop_margin: float = checked(in_range(0.1, 3600), default=5.0)
    #: seconds a worker gets between SIGTERM and SIGKILL when its lease is running out
    lapse_grace: float = checked(in_range(0, 3600), default=2.0)
    #: every shard's control / tap endpoint, for the fleet view: ``{shard}`` is replaced by
    #: the index, e.g. "tcp://botvisor-{shard}.botvisor:7100"
    peer_control: str | None = checked(_template, default=None)
    peer_tap: str | None = checked(_template, default=None)

    def problem(self) -> tuple[str, str] | None:
        """(key, reason) when the settings contradict each other."""
        if isinstance(self.shard, int) and self.shard >= self.shards:
            return "shard", f"{self.shard} is not below shards = {self.shards}"
        if self.renew_interval >= self.lease_ttl - self.stop_margin:
            return "renew_interval", (f"{self.renew_interval:g} s must be below lease_ttl - stop_margin "
                                      f"({self.lease_ttl - self.stop_margin:g} s), or a renewal comes too late")
        if self.lapse_grace >= self.lease_ttl - self.stop_margin:
            return "lapse_grace", f"{self.lapse_grace:g} s must be below lease_ttl - stop_margin"
        return None

    def dsn(self) -> str | None:
        return self.database or os.environ.get(DATABASE_ENV) or None

    def peers(self, role: str) -> list[str]:
        template = self.peer_control if role == "control" else self.peer_tap
        return [template.format(shard=k) for k in range(self.shards)] if template else []


class ShardUnknown(ValueError):
    pass


def resolve_shard(settings: ClusterSettings, hostname: str | None = None) -> int:
    """This process's shard index; ShardUnknown saying why when "auto" finds none."""
    value: int | str = settings.shard
    if value == "auto":
        env = os.environ.get(SHARD_ENV)
        if env is not None:
            if not env.isdigit():
                raise ShardUnknown(f"${SHARD_ENV}={env!r} is not a shard index")
            value = int(env)
        else:
            host = hostname if hostname is not None else socket.gethostname()
            found = _ORDINAL.search(host.split(".")[0])
            if not found:
                raise ShardUnknown(f'shard = "auto" needs a hostname ending in -<ordinal> (a StatefulSet pod) '
                                   f"or ${SHARD_ENV}; this host is {host!r}")
            value = int(found.group(1))
    assert isinstance(value, int)
    if value >= settings.shards:
        raise ShardUnknown(f"shard {value} is not below shards = {settings.shards}")
    return value


# -- placement: rendezvous (highest random weight) hashing ------------------------------------
# Here in protocol/ because every side computes it: the shards (which bots are mine), the CLI and
# the gateway (which shard to ask about a bot). Changing N from n to n+1 moves exactly the bots
# whose highest score becomes the new shard's: about 1/(n+1) of them, and nothing else.

def score(bot_id: str, shard: int) -> int:
    # blake2b: the same in every process and Python version (hash() is salted per process)
    return int.from_bytes(hashlib.blake2b(f"{bot_id}\0{shard}".encode(), digest_size=8).digest(), "big")


def shard_of(bot: Any, shards: int) -> int:
    """The shard that runs ``bot`` (a BotConfig, whose ``shard`` pin wins, or a bot id)."""
    pin = None if isinstance(bot, str) else bot.shard
    if pin is not None:
        return pin
    bot_id = bot if isinstance(bot, str) else bot.id
    return max(range(shards), key=lambda k: score(bot_id, k))
