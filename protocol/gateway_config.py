"""The ``[gateway]`` table and its ``[[gateway.webhooks]]``: the HTTP gateway's settings.

Read by the same loader as the rest of the file (protocol/config.py), so a bad value is refused
with the key's path, like any other. The supervisor ignores this table; the gateway
(``botvisor gateway -c FILE``) re-reads it on ``botvisor reload`` and on SIGHUP.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from .schema import checked, in_range
from .settings import listen_problem

#: what a webhook's ``events`` may name besides the worker event types
EXTRA_EVENT_TYPES = ("state", "gateway")


def _url(value: str) -> str | None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{value!r} must be an http:// or https:// URL with a host"
    return None


def _globs(value: list[str]) -> str | None:
    if not value:
        return "must name at least one bot (use [\"*\"] for every bot)"
    bad = [g for g in value if not isinstance(g, str) or not g or "." in g or "/" in g]
    return f"bad bot glob(s) {bad!r}" if bad else None


def _event_types(value: list[str]) -> str | None:
    from .events import EventType

    known = {t.value for t in EventType} | set(EXTRA_EVENT_TYPES) | {"*"}
    bad = [t for t in value if t not in known]
    return f"unknown event type(s) {bad!r} (known: {', '.join(sorted(known))})" if bad else None


def _name(value: str) -> str | None:
    from .codec import valid_name

    return None if valid_name(value) else f"{value!r} must be 1 to 64 letters, digits, '_' or '-'"


@dataclass(frozen=True, slots=True)
class WebhookRetry:
    """When a failed delivery is tried again: ``initial * factor**n`` seconds, capped, jittered."""

    initial: float = checked(in_range(0, 86400), default=5.0)
    factor: float = checked(in_range(1, 100), default=2.0)
    max: float = checked(in_range(0, 86400), default=300.0)
    jitter: float = checked(in_range(0, 1), default=0.2)
    #: attempts in all (the first included) before a delivery goes to the dead letters
    attempts: int = checked(in_range(1, 10000), default=12)


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """One endpoint that receives the fleet's events."""

    url: str = checked(_url)
    #: the endpoint's identity in the outbox, the CLI and the metrics (default: derived from the url)
    name: str | None = checked(_name, default=None)
    #: shared secret for the signature; ``secret_file`` (relative to the config) instead keeps it out of the file
    secret: str | None = None
    secret_file: str | None = None
    bots: list[str] = checked(_globs, default_factory=lambda: ["*"])
    #: event types (``message-upsert``, ...), ``state`` (container state changes), ``gateway`` (gaps,
    #: pauses), or ``*``
    events: list[str] = checked(_event_types, default_factory=lambda: ["*"])
    #: seconds one attempt may take (connect + answer)
    timeout: float = checked(in_range(0.1, 600), default=10.0)
    retry: WebhookRetry = field(default_factory=WebhookRetry)
    #: a failing endpoint (no success for this many seconds) is paused, with a notice
    pause_after: float = checked(in_range(1, 30 * 86400), default=900.0)
    #: seconds between probes of a paused endpoint (one real delivery; a success resumes it)
    probe_every: float = checked(in_range(0.1, 86400), default=60.0)
    #: deliveries in flight to this endpoint at once (one per bot at most: per-bot order)
    concurrency: int = checked(in_range(1, 1000), default=32)

    def wants(self, bot: str, event_type: str) -> bool:
        return (("*" in self.events or event_type in self.events)
                and any(fnmatch.fnmatchcase(bot, g) for g in self.bots))


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    """``[gateway]``: the HTTP API, the live stream and the webhooks' outbox."""

    #: host:port the HTTP server binds (loopback by default: put a TLS proxy in front to expose it)
    listen: str = checked(listen_problem, default="127.0.0.1:8780")
    #: the outbox, dead letters and cursors (SQLite), relative to the config file
    data_dir: str = "gateway"
    #: the API keys' hashes; default ``<config name>.keys.json`` next to the config file
    keys_file: str | None = None
    #: the largest request body accepted, bytes
    max_body_bytes: int = checked(in_range(1024, 1 << 30), default=1024 * 1024)
    #: deliveries kept in the outbox (pending + dead); past it the oldest dead letters go first
    outbox_limit: int = checked(in_range(100, 100_000_000), default=1_000_000)
    #: "full": each commit fsynced before its deliveries are attempted (survives a power cut);
    #: "normal": survives a gateway crash or SIGKILL and a clean reboot, and a power cut may lose
    #: the last commits; a commit no longer waits on the disk (docs/webhooks.md, "The outbox")
    outbox_sync: Literal["full", "normal"] = "full"
    #: seconds the gateway waits for a control command (status, send, ...) beyond the worker's own timeout
    command_timeout: float = checked(in_range(0.1, 3600), default=10.0)
    #: messages queued per live-stream client before it starts losing them (it sees the seq gaps)
    stream_queue: int = checked(in_range(10, 1_000_000), default=10_000)
    #: in a [cluster], whose events go to the webhooks: "shard", those of the shard the gateway runs
    #: beside (as in each StatefulSet pod: every event once, fleet-wide), or "fleet", every shard's
    #: (one gateway for the whole fleet). Status, actions and the stream always cover every shard
    webhooks_from: Literal["shard", "fleet"] = "shard"
    webhooks: list[WebhookConfig] = field(default_factory=list)


def webhook_name(hook: WebhookConfig, index: int) -> str:
    if hook.name:
        return hook.name
    parts = urlsplit(hook.url)
    host = "".join(c if c.isalnum() else "-" for c in f"{parts.hostname}-{parts.port or ''}{parts.path}")
    return host.strip("-")[:56] or f"hook-{index}"


def check_webhooks(hooks: list[WebhookConfig]) -> tuple[str, str] | None:
    """(key, reason) for the first problem across the endpoints, else None."""
    seen: dict[str, int] = {}
    for i, hook in enumerate(hooks):
        name = webhook_name(hook, i)
        if name in seen:
            return f"gateway.webhooks[{i}].name", f"{name!r} is also webhooks[{seen[name]}]'s name (names must be unique)"
        seen[name] = i
        if hook.secret and hook.secret_file:
            return f"gateway.webhooks[{i}].secret", "give secret or secret_file, not both"
        if not (hook.secret or hook.secret_file):
            return f"gateway.webhooks[{i}].secret", "a webhook needs a secret (or secret_file) to sign its deliveries"
    return None


def as_dict(hook: WebhookConfig) -> dict[str, Any]:
    """The endpoint's settings without its secret (what the API and CLI show)."""
    return {"url": hook.url, "bots": list(hook.bots), "events": list(hook.events), "timeout": hook.timeout,
            "pause_after": hook.pause_after, "concurrency": hook.concurrency}
