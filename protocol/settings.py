"""The tables of botvisor.toml as frozen dataclasses: every key, its default and its check.

protocol/config.py loads a file into them (and re-exports them: ``from protocol.config import
BotConfig`` keeps working); the [cluster] and [gateway] tables have modules of their own
(cluster_config.py, gateway_config.py). A check returns the reason a value is refused, or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .appref import check_app
from .backoff import RestartPolicy
from .codec import valid_name
from .schema import checked, in_range

BOT_ID_RULE = "1 to 64 letters, digits, '_' or '-'"


def _name(value: str) -> str | None:
    return None if valid_name(value) else f"{value!r} is not a valid name (use {BOT_ID_RULE})"


def _level(value: str) -> str | None:
    levels = ("debug", "info", "warning", "error", "critical")
    return None if value.lower() in levels else f"must be one of {', '.join(levels)}, got {value!r}"


@dataclass(frozen=True, slots=True)
class SimulatedSettings:
    """Knobs of the offline simulated backend ([bots.simulated]); times in seconds."""

    #: start with a stored session (True) or show QR codes until pair_after
    paired: bool = True
    #: seconds of QR codes before the simulated phone scans one (None: never)
    pair_after: float | None = checked(in_range(0, 86400), default=1.0)
    #: seconds between QR refreshes while unpaired
    qr_every: float = checked(in_range(0.01, 3600), default=20.0)
    #: seconds the QR codes last before they run out unused (whatsmeow's are about 160)
    pairing_timeout: float = checked(in_range(0.01, 86400), default=160.0)
    #: seconds from connecting to open
    connect_delay: float = checked(in_range(0, 3600), default=0.05)
    #: incoming messages per second (0: none)
    message_rate: float = checked(in_range(0, 1_000_000), default=0.0)
    #: presence updates per second (0: none)
    presence_rate: float = checked(in_range(0, 1_000_000), default=0.0)
    seed: int = 0
    #: faults, for tests and demos: seconds after start (or after open) they strike
    crash_after: float | None = checked(in_range(0, 86400), default=None)
    hang_after: float | None = checked(in_range(0, 86400), default=None)
    logout_after: float | None = checked(in_range(0, 86400), default=None)
    ban_after: float | None = checked(in_range(0, 86400), default=None)
    disconnect_every: float | None = checked(in_range(0, 86400, above=0), default=None)
    #: how many dials fail after each disconnect before one succeeds
    reconnect_failures: int = checked(in_range(0, 1000), default=0)
    #: die (exit 70) right after the Nth delivery in the bot's delivery log, before the outbox
    #: records it: the crash window of docs/sends.md (counted across restarts, so once)
    crash_after_deliveries: int | None = checked(in_range(1, 1 << 40), default=None)
    #: seconds each send takes on the (simulated) network: waited on the worker's I/O thread, as
    #: a slow upload is on neonize's, so the reply and the send-status come that much later
    send_delay: float = checked(in_range(0, 3600), default=0.0)
    #: stop generating incoming messages after this many (0: no limit)
    message_limit: int = checked(in_range(0, 1 << 40), default=0)
    #: start a child process (a sleep) when running: stopping the worker must stop it too
    spawn_child: bool = False
    #: MiB to allocate once running (exercises the max_memory guard)
    allocate_mb: int = checked(in_range(0, 65536), default=0)
    #: print a line to stdout and stderr every this many seconds (exercises log capture)
    print_every: float | None = checked(in_range(0, 86400, above=0), default=None)
    #: incoming traffic for demos: tables of ``at`` (seconds after the session opens) plus the
    #: arguments of `botvisor simulate` (``from``, ``text``, ``group``, ``kind``, ...)
    script: list[dict[str, Any]] = checked(lambda v: _script_problem(v), default_factory=list)
    #: numbers check_numbers reports as not on WhatsApp (every other valid number is)
    unregistered: list[str] = field(default_factory=list)


#: the keys a [bots.simulated] script entry may have (docs/configuration.md)
SCRIPT_KEYS = frozenset({"at", "kind", "from", "text", "group", "quote", "mentions", "media", "link", "target",
                         "emoji", "message_ids", "type", "state", "video", "call_id", "reason", "action",
                         "participants", "subject", "description", "value", "presence", "push_name", "sender_alt"})


def _script_problem(entries: list[Any]) -> str | None:
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            return f"entry {i} must be a table, got {type(entry).__name__}"
        unknown = sorted(set(entry) - SCRIPT_KEYS)
        if unknown:
            return f"entry {i}: unknown key {unknown[0]!r} (known: {', '.join(sorted(SCRIPT_KEYS))})"
        at = entry.get("at")
        if isinstance(at, bool) or not isinstance(at, (int, float)) or not 0 <= at <= 86400:
            return f"entry {i}: 'at' must be a number of seconds from 0 to 86400, got {at!r}"
    return None


@dataclass(frozen=True, slots=True)
class WhatsAppSettings:
    """[bots.whatsapp]: how the session is kept (both backends)."""

    #: worker lives in a row whose QR or pair code ran out unused before the bot goes to failed
    pairing_lives: int = checked(in_range(1, 1000), default=3)
    #: the largest file send_media sends and download fetches, MiB
    media_max_mb: int = checked(in_range(1, 2048), default=64)


@dataclass(frozen=True, slots=True)
class BotConfig:
    """One [[bots]] entry with every inherited value resolved: what a worker is handed."""

    id: str = checked(lambda v: None if valid_name(v) else f"{v!r} is not a valid bot id (use {BOT_ID_RULE})")
    backend: Literal["simulated", "neonize"] = "simulated"
    #: false: configured but not started with the fleet (`botvisor start` starts it)
    autostart: bool = True
    heartbeat_interval: float = checked(in_range(0.01, 86400), default=30.0)
    #: None in the file means 3 x heartbeat_interval
    heartbeat_timeout: float | None = checked(in_range(0.01, 86400), default=None)
    max_reconnect_attempts: int = checked(in_range(1, 10000), default=10)
    event_history: int = checked(in_range(0, 1_000_000), default=100)
    stop_timeout: float = checked(in_range(0, 3600), default=10.0)
    backoff: RestartPolicy = field(default_factory=RestartPolicy)
    log_level: str = checked(_level, default="info")
    #: pair by phone code instead of QR (digits with country code)
    phone_number: str | None = checked(lambda v: None if v.isdigit() and 6 <= len(v) <= 20 else f"{v!r} must be 6 to 20 digits with the country code", default=None)
    #: proxy URL for this bot's WhatsApp connection (neonize)
    proxy: str | None = None
    #: outgoing messages per minute (token bucket); WhatsApp bans fast senders
    messages_per_minute: float = checked(in_range(0.01, 6_000_000), default=6.0)
    #: sends that may wait in the bot's durable outbox; past it a send is refused
    outbox_max: int = checked(in_range(1, 1_000_000), default=1000)
    #: "full": an accepted send survives a power cut (fsync per change); "normal": a killed worker
    outbox_sync: Literal["full", "normal"] = "full"
    #: restart the worker when its RSS exceeds this many MiB
    max_memory_mb: int | None = checked(in_range(1, 1_048_576), default=None)
    #: nice steps the worker runs below the supervisor, so busy bots cannot starve it (0: same)
    nice: int = checked(in_range(0, 19), default=10)
    #: run this bot's worker as this user/group (supervisor running as root only)
    user: str | None = None
    group: str | None = None
    simulated: SimulatedSettings = field(default_factory=SimulatedSettings)
    #: [cluster] only: run this bot on this shard instead of where rendezvous hashing puts it
    shard: int | None = checked(in_range(0, 4095), default=None)
    whatsapp: WhatsAppSettings = field(default_factory=WhatsAppSettings)
    #: the bot's app: "package.module:attribute" or "path/to/file.py:attribute" (docs/apps.md)
    app: str | None = checked(check_app, default=None)
    #: any table, handed to the app as read-only plain data (ctx.config)
    app_config: dict[str, Any] = field(default_factory=dict)
    #: seconds a handler may run before an error event; twice this and the app counts as stuck
    handler_timeout: float = checked(in_range(0.01, 3600), default=30.0)
    #: set by the loader, never in the file: the config file's directory, where app modules are found
    app_root: str | None = None

    @property
    def stale_after(self) -> float:
        return self.heartbeat_timeout if self.heartbeat_timeout is not None else 3 * self.heartbeat_interval


#: [supervisor] keys a bot inherits unless its own entry sets them
INHERITED = ("heartbeat_interval", "heartbeat_timeout", "max_reconnect_attempts", "event_history",
             "stop_timeout", "log_level", "messages_per_minute", "max_memory_mb", "nice", "outbox_max",
             "outbox_sync")


@dataclass(frozen=True, slots=True)
class SupervisorSettings:
    server_name: str = checked(_name, default="botvisor")
    auth_dir: str = "auth"
    run_dir: str = "run"
    #: per-bot log files with rotation; None logs to stderr (journald)
    log_dir: str | None = None
    log_level: str = checked(_level, default="info")
    log_max_bytes: int = checked(in_range(4096, 1 << 40), default=10 * 1024 * 1024)
    log_backups: int = checked(in_range(0, 1000), default=5)
    heartbeat_interval: float = checked(in_range(0.01, 86400), default=30.0)
    heartbeat_timeout: float | None = checked(in_range(0.01, 86400), default=None)
    max_reconnect_attempts: int = checked(in_range(1, 10000), default=10)
    event_history: int = checked(in_range(0, 1_000_000), default=100)
    stop_timeout: float = checked(in_range(0, 3600), default=10.0)
    #: seconds between starting two bots, so a fleet does not stampede WhatsApp on boot
    start_interval: float = checked(in_range(0, 3600), default=0.1)
    #: workers of a heavy backend (neonize) loading it at the same time, the rest waiting their
    #: turn after their hello (worker/start_gate.py); 0: one per CPU
    start_concurrency: int = checked(in_range(0, 4096), default=0)
    #: seconds a worker command (send, logout, ...) may take before the operator gets an error
    command_timeout: float = checked(in_range(0.01, 3600), default=10.0)
    messages_per_minute: float = checked(in_range(0.01, 6_000_000), default=6.0)
    #: every bot's default for outbox_max and outbox_sync
    outbox_max: int = checked(in_range(1, 1_000_000), default=1000)
    outbox_sync: Literal["full", "normal"] = "full"
    #: messages queued per tap before that tap starts losing them (it sees the gaps in seq)
    tap_queue: int = checked(in_range(10, 10_000_000), default=100_000)
    #: every bot's default for max_memory_mb (None: no limit)
    max_memory_mb: int | None = checked(in_range(1, 1_048_576), default=None)
    #: every bot's default for nice: the workers' CPU priority below the supervisor's
    nice: int = checked(in_range(0, 19), default=10)
    backoff: RestartPolicy = field(default_factory=RestartPolicy)
    #: this many bots failing with the same WhatsApp code within outage_window seconds is one
    #: fleet-wide outage: one notice and a metric (supervisor/outage.py)
    outage_bots: int = checked(in_range(2, 1_000_000), default=3)
    outage_window: float = checked(in_range(1, 86400), default=300.0)


@dataclass(frozen=True, slots=True)
class Endpoints:
    """ZeroMQ endpoints, named by role. None: an ipc:// socket inside run_dir."""

    #: workers -> supervisor (PUB/SUB, signed)
    events: str | None = None
    #: supervisor -> taps (XPUB): every worker message plus state changes
    tap: str | None = None
    #: operators -> supervisor (ROUTER): status, start, stop, send, ...
    control: str | None = None
    #: supervisor -> workers (ROUTER/DEALER, one identity per bot)
    commands: str | None = None


def split_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` or ``"[::1]:9464"`` -> (host, port); ValueError saying what is wrong."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{value!r} must be HOST:PORT with a port from 1 to 65535 (e.g. \"127.0.0.1:9464\")")
    return host, int(port)


def listen_problem(value: str) -> str | None:
    try:
        split_listen(value)
    except ValueError as exc:
        return str(exc)
    return None


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    #: host:port for the Prometheus endpoint; None: off
    listen: str | None = checked(listen_problem, default=None)


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """CURVE keys (docs/control.md, "Security"); paths relative to the file. Needed as soon as
    the control or tap endpoint is tcp://; ipc:// endpoints are guarded by the 0700 run_dir."""

    #: the supervisor's key pair: a ``.key_secret`` file written by `botvisor keys generate`
    server_key: str | None = None
    #: the supervisor's public ``.key`` file, for clients without server_key (default: from server_key)
    server_public_key: str | None = None
    #: a directory holding the public ``.key`` file of every client allowed to connect
    authorized_keys: str | None = None
    #: the key pair botvisor commands present to a tcp:// supervisor (a ``.key_secret`` file)
    client_key: str | None = None
