"""Which shard runs which bot: rendezvous (highest random weight) hashing, unless pinned.

Every shard computes the same answer from the same file, with no coordination: a bot goes to
the shard whose hash of (bot, shard) is highest. Changing N from n to n+1 moves exactly the
bots whose new highest score is the new shard's, about 1/(n+1) of them, and nothing else.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from protocol.cluster_config import score, shard_of
from protocol.config import BotConfig, Config

__all__ = ["Move", "assignment", "local_config", "moves", "report", "score", "shard_of"]


def assignment(bots: Iterable[BotConfig], shards: int) -> dict[str, int]:
    return {bot.id: shard_of(bot, shards) for bot in bots}


@dataclass(frozen=True)
class Move:
    bot: str
    source: int
    target: int


def moves(bots: Iterable[BotConfig], old: int, new: int) -> list[Move]:
    """The bots that change shard when N goes from ``old`` to ``new``."""
    bots = list(bots)
    before, after = assignment(bots, old), assignment(bots, new)
    return [Move(b.id, before[b.id], after[b.id]) for b in bots if before[b.id] != after[b.id]]


def local_config(config: Config, shard: int) -> Config:
    """The view of ``config`` a shard runs: only its own bots."""
    import dataclasses

    assert config.cluster is not None
    mine = tuple(bot for bot in config.bots if shard_of(bot, config.cluster.shards) == shard)
    return dataclasses.replace(config, bots=mine)


def report(config: Config, other: list[int]) -> str:
    """`check-config --shards`: the assignment, and what changing N to each of ``other`` moves."""
    assert config.cluster is not None
    n = config.cluster.shards
    table = assignment(config.bots, n)
    counts = Counter(table.values())
    pinned = sum(bot.shard is not None for bot in config.bots)
    lines = [f"{len(config.bots)} bot(s) on {n} shard(s) by rendezvous hashing ({pinned} pinned):"]
    for k in range(n):
        lines.append(f"  shard {k}: {counts.get(k, 0)} bot(s)")
    for bot in config.bots:
        lines.append(f"    {bot.id:<24} shard {table[bot.id]}{' (pinned)' if bot.shard is not None else ''}")
    for m in other:
        if m < 1:
            continue
        if any(bot.shard is not None and bot.shard >= m for bot in config.bots):
            lines.append(f"N = {m}: impossible, a bot is pinned to a shard >= {m}")
            continue
        moved = moves(config.bots, n, m)
        share = len(moved) / len(config.bots) if config.bots else 0.0
        lines.append(f"N {n} -> {m}: {len(moved)} of {len(config.bots)} bot(s) move ({share:.0%})")
        for move in moved:
            lines.append(f"    {move.bot:<24} shard {move.source} -> {move.target}")
    return "\n".join(lines)
