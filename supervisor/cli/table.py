"""The fleet table shared by `botvisor status` and `botvisor top`: columns, health, sorting."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

STATE_STYLES = {"running": "green", "failed": "bold red", "backoff": "yellow", "stopping": "yellow",
                "stopped": "dim", "initializing": "cyan"}
STATUS_STYLES = {"online": "green", "offline": "red", "loading": "yellow"}
COLUMNS = ("BOT", "STATE", "STATUS", "PID", "UPTIME", "RESTARTS", "HEARTBEAT", "ATTEMPTS", "EVENTS", "LOST",
           "RSS", "CPU", "REASON")


def is_bad(bot: dict[str, Any]) -> bool:
    """Failed, waiting to restart after a crash, running without fresh heartbeats, or on a shard
    that does not answer (``unknown``)."""
    state = bot["container_state"]
    return state in ("failed", "backoff", "unknown") or (state == "running" and not bot["is_healthy"])


def health_rank(bot: dict[str, Any]) -> int:
    """Sort key: the bots needing attention first, stopped ones last."""
    state = bot["container_state"]
    if state in ("failed", "unknown"):
        return 0
    if state == "running" and not bot["is_healthy"]:
        return 1
    if state == "backoff":
        return 2
    if state in ("initializing", "stopping"):
        return 3
    if state == "running":
        return 4 if bot["bot_status"] == "online" else 3
    return 5


def heartbeat_age(bot: dict[str, Any], now: float | None = None) -> float | None:
    stamp = bot.get("last_heartbeat")
    if not stamp or bot.get("pid") is None:
        return None
    try:
        then = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None
    return max(0.0, (now if now is not None else time.time()) - then)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def mib(rss: int) -> str:
    return f"{rss / 1048576:.1f}M" if rss else "-"


def row(bot: dict[str, Any], now: float | None = None) -> list[str]:
    if bot["container_state"] == "unknown":  # its shard did not answer: nothing but what it is
        return [bot["bot_id"], "unknown", "unknown", *["-"] * 9, bot.get("reason") or ""]
    age = heartbeat_age(bot, now)
    return [
        bot["bot_id"], bot["container_state"], bot["bot_status"], str(bot["pid"] or "-"), duration(bot["uptime"]),
        str(bot["restarts"]), "-" if age is None else f"{age:.1f}s", str(bot["connection_attempts"]),
        str(bot["events_total"]), str(bot["events_lost"]), mib(bot["rss"]),
        f"{bot['cpu']:.1f}%" if bot["pid"] else "-", bot["reason"] or "",
    ]


def build(bots: list[dict[str, Any]], title: str | None = None, now: float | None = None) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left")
    for name in COLUMNS:
        numeric = name in ("PID", "RESTARTS", "ATTEMPTS", "EVENTS", "LOST", "RSS", "CPU", "HEARTBEAT", "UPTIME")
        table.add_column(name, justify="right" if numeric else "left", no_wrap=name != "REASON",
                         overflow="fold" if name == "REASON" else "ellipsis")
    sharded = any("shard" in bot for bot in bots)
    if sharded:  # [cluster] fleet views: which shard runs the bot
        table.add_column("SHARD", justify="right", no_wrap=True)
    for bot in bots:
        cells = row(bot, now)
        if sharded:
            cells.append("-" if bot.get("shard") is None else str(bot["shard"]))
        styled = [Text(c) for c in cells]
        styled[1].stylize(STATE_STYLES.get(bot["container_state"], ""))
        styled[2].stylize(STATUS_STYLES.get(bot["bot_status"], ""))
        if bot["container_state"] == "running" and not bot["is_healthy"]:
            styled[6].stylize("bold red")
        if bot["events_lost"]:
            styled[9].stylize("red")
        table.add_row(*styled, style="bold" if is_bad(bot) else None)
    return table
