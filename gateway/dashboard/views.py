"""What the pages show, computed from the supervisor's status: rows, sorting, filters, formats.

Pure functions over plain data, so the fleet page and its live fragment render one way.
"""

from __future__ import annotations

import fnmatch
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from protocol.states import ContainerState

STATES = tuple(s.value for s in ContainerState)
#: column -> how its rows sort (the default sort is by id)
SORTS: dict[str, Any] = {
    "id": lambda r: r.id,
    "state": lambda r: (r.state, r.id),
    "whatsapp": lambda r: (r.whatsapp, r.id),
    "uptime": lambda r: (r.uptime if r.uptime is not None else -1, r.id),
    "restarts": lambda r: (r.restarts, r.id),
    "heartbeat": lambda r: (r.heartbeat_age if r.heartbeat_age is not None else float("inf"), r.id),
    "memory": lambda r: (r.rss or 0, r.id),
    "lost": lambda r: (r.events_lost, r.id),
    "shard": lambda r: (r.shard if r.shard is not None else -1, r.id),
}


@dataclass(frozen=True, slots=True)
class FleetRow:
    id: str
    state: str
    whatsapp: str
    needs_pairing: bool
    pid: int | None
    uptime: float | None
    restarts: int
    heartbeat_ts: float | None
    heartbeat_age: float | None
    rss: int | None
    events_lost: int
    reason: str | None
    healthy: bool
    #: the shard that runs it, in a [cluster] (None on one host)
    shard: int | None = None


def parse_iso(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def fleet_row(entry: dict[str, Any], pairing: bool, now: float | None = None) -> FleetRow:
    now = time.time() if now is None else now
    heartbeat = parse_iso(entry.get("last_heartbeat"))
    state = entry.get("container_state", "?")
    running = state in ("running", "initializing")
    return FleetRow(
        id=entry.get("bot_id", "?"), state=state, whatsapp=entry.get("bot_status") or "?",
        needs_pairing=pairing and running, pid=entry.get("pid"),
        uptime=entry.get("uptime") if running else None, restarts=int(entry.get("restarts") or 0),
        heartbeat_ts=heartbeat if running else None,
        heartbeat_age=max(0.0, now - heartbeat) if heartbeat and running else None,
        rss=entry.get("rss"), events_lost=int(entry.get("events_lost") or 0), reason=entry.get("reason"),
        healthy=bool(entry.get("is_healthy")), shard=entry.get("shard"))


@dataclass(frozen=True, slots=True)
class FleetQuery:
    """The fleet page's sort and filters, from (and back to) its query string."""

    sort: str = "id"
    desc: bool = False
    state: str = ""
    q: str = ""

    @classmethod
    def parse(cls, params: Any) -> FleetQuery:
        sort = params.get("sort", "id")
        state = params.get("state", "")
        return cls(sort=sort if sort in SORTS else "id", desc=params.get("desc") == "1",
                   state=state if state in STATES or state == "pairing" else "", q=(params.get("q") or "")[:64])

    def apply(self, rows: list[FleetRow]) -> list[FleetRow]:
        if self.state == "pairing":
            rows = [r for r in rows if r.needs_pairing]
        elif self.state:
            rows = [r for r in rows if r.state == self.state]
        if self.q:
            pattern = self.q if any(c in self.q for c in "*?[") else f"*{self.q}*"
            rows = [r for r in rows if fnmatch.fnmatchcase(r.id.lower(), pattern.lower())]
        return sorted(rows, key=SORTS[self.sort], reverse=self.desc)

    def params(self, **change: Any) -> str:
        values = {"sort": self.sort, "desc": "1" if self.desc else "", "state": self.state, "q": self.q}
        values.update({k: ("1" if v is True else "" if v is False else v) for k, v in change.items()})
        if values["sort"] == "id":
            values["sort"] = ""
        from urllib.parse import urlencode

        return urlencode({k: v for k, v in values.items() if v})

    def sort_link(self, column: str) -> str:
        """The query that sorts by ``column`` (flipping the direction if it is the current one)."""
        return self.params(sort=column, desc=not self.desc if column == self.sort else False)


def counts(rows: list[FleetRow]) -> dict[str, int]:
    out = {state: 0 for state in STATES}
    for row in rows:
        out[row.state] = out.get(row.state, 0) + 1
    out["pairing"] = sum(r.needs_pairing for r in rows)
    return out


# -- formats -------------------------------------------------------------------------------
def age(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"
    return f"{seconds // 86400:.0f} d {seconds % 86400 // 3600:.0f} h"


def size(n: int | None) -> str:
    if not n:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def when(ts: float | None) -> str:
    if not ts:
        return "–"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def readable(data: Any) -> list[tuple[str, str]]:
    """An event's data as (field, value) lines: scalars as they are, the rest as compact JSON."""
    if not isinstance(data, dict):
        return [("", json.dumps(data, default=str, ensure_ascii=False))]
    out = []
    for key, value in data.items():
        if value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        out.append((key, text if len(text) <= 500 else text[:500] + "…"))
    return out


def send_outcomes(history: list[dict[str, Any]]) -> dict[str, str]:
    """Send id -> its latest outcome from the history's ``send-status`` events (a send shown
    after a redirect may have finished before the page's live stream connected)."""
    out = {}
    for entry in history:
        data = entry.get("data") or {}
        if entry.get("type") == "send-status" and data.get("id"):
            out[str(data["id"])] = data.get("state", "?") + (f" ({data['reason']})" if data.get("reason") else "")
    return out


def public_url(url: str) -> str:
    """A webhook URL without what may be a secret in it: credentials, query and fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    shown = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return shown + ("?…" if parts.query else "")
