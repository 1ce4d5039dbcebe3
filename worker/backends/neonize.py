"""REAL WhatsApp through neonize (whatsmeow, in Go): one client per worker process.

Threads. ``client.connect()`` blocks in Go for the whole session, so it runs on its own
daemon thread; whatsmeow calls the event handlers on Go-created threads through a 100-slot
buffer. Those handlers (and the QR callback) only put the event on a queue and write a byte
to a wakeup pipe, which the worker's poller watches: every decision, every published event
and every file write happens on the worker's main loop, in ``poll``.

Who reconnects (docs/neonize.md, "Reconnects"): at most one ``connect()`` runs at a time.
While it runs, the session is whatsmeow's, and whatsmeow reconnects a dropped session on its
own (it cannot be switched off through neonize); the worker never dials on top of it, it only
watches: each ``reconnect_delay`` that passes without the session back counts an attempt.
When ``connect()`` itself ends (the first dial failed: it raises at once), the worker dials
again after ``reconnect_delay``. Either way, after ``max_reconnect_attempts`` the worker
exits with BotCrash and the supervisor's restart policy takes over, which also clears the fd
and ~190 kB each failed ``connect()`` leaks.

Stopping never waits for Go: ``client.stop()`` blocks until an in-flight dial ends (up to
60 s), so ``stop`` runs it on a daemon thread and the worker ends with ``os._exit``
(``hard_exit``) once its bye is out.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

from protocol import (
    BotStatus,
    ConnectionUpdate,
    CredsUpdate,
    ErrorEvent,
    EventData,
    MessageUpsert,
)
from protocol.backoff import reconnect_delay

from .. import neonize_preload, pairing
from ..errors import BotCrash, CommandError, FatalBotError
from .base import Backend, BackendContext

#: whatsmeow's session store (SQLite) inside the bot's directory; the credentials tools use this name
NEONIZE_STORE = "session.sqlite3"
#: SQLite URI parameters (mattn/go-sqlite3): WAL and a busy timeout so whatsmeow's own
#: concurrent writes wait instead of failing with "database is locked". neonize appends
#: "?_foreign_keys=on" itself: the trailing "&" keeps that from breaking our last parameter.
STORE_PARAMETERS = "?_journal_mode=WAL&_busy_timeout=10000&_foreign_keys=on&"
#: proxy variables Go's HTTP client would honour; a bot's proxy comes from its config only
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
#: events handled in one poll at most, so heartbeats keep flowing during a burst
MAX_BATCH = 256
#: failed dials one worker life makes at most: neonize opens the store on every connect() and
#: never closes it when the dial fails, 2 fds each (the database and its WAL; measured by
#: tests/test_neonize_dispatch.py), so a new life, which frees them, comes before ulimit -n does
MAX_FAILED_DIALS = 100
_GO_LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
                  "error": logging.ERROR, "critical": logging.ERROR}


def strip_proxy_environment() -> list[str]:
    """Remove the proxy variables (any case) from this process's environment."""
    removed = [name for name in os.environ if name.upper() in PROXY_VARIABLES]
    for name in removed:
        del os.environ[name]
    return removed


# Go copies the environment when its runtime starts, which is when neonize is imported: strip
# first. The worker configured logging before importing this module (neonize's import calls
# logging.basicConfig, a no-op once the root logger has a handler).
STRIPPED_PROXY_VARIABLES = strip_proxy_environment()
neonize_preload.complete()  # the package the forkserver preloaded without its __init__

from neonize._binder import ProxySettings  # noqa: E402
from neonize.client import NewClient  # noqa: E402
from neonize.utils import build_jid  # noqa: E402
from neonize.utils.enum import ChatPresence, ChatPresenceMedia, Presence, ReceiptType  # noqa: E402

from . import neonize_events  # noqa: E402
from .neonize_lifetime import own, release  # noqa: E402
from .neonize_ops import NeonizeOperations, no_chosen_id  # noqa: E402
from .neonize_pairing import QR_FILE, NeonizePairing, _LoginStatus, _PairCode, _Qr  # noqa: E402,F401


@dataclass(frozen=True)
class _DialEnded:
    """connect() returned (Go's error, or None when the session ended)."""

    error: str | None


def store_uri(bot_dir: Path) -> str:
    """The ``name`` neonize opens as ``file:<name>``: the store path, URI-quoted, plus parameters."""
    return quote(str(Path(bot_dir).resolve() / NEONIZE_STORE), safe="/") + STORE_PARAMETERS


def parse_jid(value: str) -> Any:
    """A neonize JID from ``user@server`` (arguments.to_jid already normalised phone numbers)."""
    user, _, server = value.rpartition("@")
    return build_jid(user, server or "s.whatsapp.net")


class NeonizeBackend(NeonizePairing, NeonizeOperations, Backend):
    name = "neonize"
    hard_exit = True

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        bot = ctx.bot
        # neonize reads the Go log level from this logger at connect(); its lines reach the
        # worker's log through the root logger (whatsmeow.*, Whatsmeow.Database)
        logging.getLogger("neonize.utils.log").setLevel(_GO_LOG_LEVELS[bot.log_level.lower()])
        # "ffmpeg not found" at every connect: botvisor's operations send text, never media
        logging.getLogger("neonize.utils.ffmpeg").setLevel(logging.ERROR)
        if STRIPPED_PROXY_VARIABLES:
            ctx.log.info("ignoring proxy variables from the environment: %s (set proxy in the bot's config)",
                         ", ".join(STRIPPED_PROXY_VARIABLES))
        os.chdir(ctx.bot_dir)  # anything a library writes relative to the cwd stays in the bot's directory
        self.rng = random.Random()
        self.proxy = ProxySettings(proxy_address=bot.proxy) if bot.proxy else None
        self.phone = bot.phone_number
        self._inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.client: NewClient | None = None
        self._dial_thread: threading.Thread | None = None
        self._redial_at: float | None = None
        #: while whatsmeow reconnects a dropped session: when the worker counts the next attempt
        self._watch_at: float | None = None
        self._last_close: str | None = None
        self._pairing = False
        self._stopping = False
        #: while QR codes are shown: when the current one was, to see the codes run out
        self._qr_at: float | None = None
        self._failed_dials = 0

    # -- Go threads: enqueue and wake the loop, nothing else ------------------------------------
    def _push(self, item: Any) -> None:
        self._inbox.put(item)
        try:
            os.write(self._wake_w, b"!")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake already

    def _on_event(self, _client: Any, event: Any) -> None:
        self._push(event)

    def _connect(self, client: NewClient) -> None:
        error = None
        try:
            client.connect(self.proxy)
        except Exception as exc:  # NeonizeError: "failed to dial whatsapp web websocket: ..."
            error = str(exc) or exc.__class__.__name__
        self._push(_DialEnded(error))

    # -- lifecycle ------------------------------------------------------------------------------
    def wakeup_fd(self) -> int | None:
        return self._wake_r

    def start(self, now: float) -> None:
        client = NewClient(store_uri(self.ctx.bot_dir), uuid=self.ctx.bot.id)
        for event_type in neonize_events.EVENT_TYPES:
            client.event(event_type)(self._on_event)
        client.qr(self._on_qr)  # replaces neonize's default, which prints the QR to fd 1
        # connect() wraps self.__onLoginStatus when it runs: an instance attribute takes its place
        client._NewClient__onLoginStatus = self._on_login_status  # type: ignore[attr-defined]
        self.client = own(client)  # no GC finalizer may ever stop it on the loop's thread
        self._dial(now)

    def _dial(self, now: float) -> None:
        assert self._dial_thread is None, "one connect() at a time"
        self._redial_at = None
        self.connection_attempts += 1
        self.status = BotStatus.LOADING
        self.ctx.emit(ConnectionUpdate("connecting", attempt=self.connection_attempts))
        self._dial_thread = threading.Thread(target=self._connect, args=(self.client,), name="neonize-connect",
                                             daemon=True)
        self._dial_thread.start()

    def stop(self) -> None:
        """Ask Go to stop, without waiting: mid-dial, ``client.stop()`` blocks up to 60 s."""
        if self._stopping:
            return
        self._stopping = True
        if self.client is not None and self._dial_thread is not None:
            release(self.client)  # client.stop() on a daemon thread; the reference is kept

    # -- the loop's entry point -------------------------------------------------------------------
    def poll(self, now: float) -> float | None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        for _ in range(MAX_BATCH):
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            self._handle(item, now)
        else:
            return now  # more waiting: come straight back after the heartbeat check
        if self._redial_at is not None and now >= self._redial_at:
            self._dial(now)
        if self._watch_at is not None and now >= self._watch_at:
            self._still_offline(now)
        stale_at = self._qr_at + pairing.QR_STALE_AFTER if self._qr_at is not None else None
        if stale_at is not None and now >= stale_at:
            self._pairing_timed_out(f"no new QR code for {pairing.QR_STALE_AFTER:.0f} s")
        return min((t for t in (self._redial_at, self._watch_at, stale_at) if t is not None), default=None)

    def _handle(self, item: Any, now: float) -> None:
        if self._stopping:
            return
        match item:
            case _DialEnded(error=error):
                self._dial_ended(error, now)
            case _Qr(code=code):
                self._qr_at = now
                self._show_qr(code)
            case _LoginStatus(status=status):
                self._login_status(status)
            case _PairCode(code=code, error=error):
                if code:
                    self.ctx.emit(ConnectionUpdate("connecting", pair_code=code, attempt=self.connection_attempts))
                else:
                    self.ctx.emit(ErrorEvent(code="pair-failed", message=f"pairing by phone code failed: {error}"))
            case _:
                for data in neonize_events.map_events(item, time.time()):
                    if isinstance(data, MessageUpsert):
                        self.recent.add(data, item)  # the protobuf: to quote, react to, download it later
                    self._apply(data, now)

    def _apply(self, data: EventData, now: float) -> None:
        match data:
            case ConnectionUpdate(connection="open"):
                self._opened(data)
            case ConnectionUpdate(connection="close"):
                self._closed(data, now)
            case ErrorEvent(code=code) if code in neonize_events.RESTART_CODES:
                self.status = BotStatus.OFFLINE
                raise BotCrash(data.code, data.message, status=data.status)
            case ErrorEvent(fatal=True):
                self.status = BotStatus.OFFLINE
                self.ctx.emit(CredsUpdate(verified=False, phone_number=self._phone_number(), last_updated=time.time(),
                                          reason=data.code))
                raise FatalBotError(data.code, data.message, status=data.status, expires_at=data.expires_at)
            case CredsUpdate(verified=True):
                self.phone = data.phone_number or self.phone
                if data.reason == "paired":
                    self._qr_at = None
                    pairing.paired(self.ctx.bot_dir)
                self.ctx.emit(data)
            case _:
                self.ctx.emit(data)

    # -- connection states ------------------------------------------------------------------------
    def _opened(self, data: ConnectionUpdate) -> None:
        self.status = BotStatus.ONLINE
        self._watch_at = self._last_close = None
        attempt, self.connection_attempts = self.connection_attempts, 0
        self.ctx.emit(replace(data, attempt=attempt))
        (self.ctx.bot_dir / QR_FILE).unlink(missing_ok=True)
        if data.reason is None:  # a new connection, not a restored keepalive
            self.ctx.emit(CredsUpdate(verified=True, phone_number=self._phone_number(), last_updated=time.time(),
                                      reason="connected"))

    def _closed(self, data: ConnectionUpdate, now: float) -> None:
        """A transient close while connect() runs: whatsmeow reconnects, the worker watches."""
        self.status = BotStatus.OFFLINE
        self._last_close = data.reason
        if self._dial_thread is None:  # connect() has ended already: its own redial follows
            self.ctx.emit(replace(data, attempt=self.connection_attempts))
            return
        if self._watch_at is None:
            self._watch_at = now + reconnect_delay(self.connection_attempts + 1, self.ctx.bot.backoff, self.rng)
        self.ctx.emit(replace(data, attempt=self.connection_attempts, retry_in=round(self._watch_at - now, 3)))

    def _still_offline(self, now: float) -> None:
        self.connection_attempts += 1
        reason = f"still offline; whatsmeow is reconnecting (last: {self._last_close})"
        self._give_up_after(reason)
        retry_in = reconnect_delay(self.connection_attempts + 1, self.ctx.bot.backoff, self.rng)
        self._watch_at = now + retry_in
        self.ctx.emit(ConnectionUpdate("close", reason=reason, attempt=self.connection_attempts,
                                       retry_in=round(retry_in, 3)))

    def _dial_ended(self, error: str | None, now: float) -> None:
        """connect() returned: the dial failed (it raises at once) or the session ended."""
        self._dial_thread = None
        self._watch_at = None
        self.status = BotStatus.OFFLINE
        lost = neonize_events.unencodable_event(error) if error else None
        if lost is not None:  # not a dial failure: neonize's event loop died on an event it could not encode
            self._apply(lost, now)
        reason = f"dial failed: {error}" if error else "the session ended"
        self._failed_dials += 1
        if self._failed_dials >= MAX_FAILED_DIALS:
            raise BotCrash("dial-limit", f"{self._failed_dials} failed dials in this worker life (each leaks 2 file "
                                         f"descriptors inside neonize); a new life frees them; last: {reason}")
        self._give_up_after(reason)
        retry_in = reconnect_delay(max(1, self.connection_attempts), self.ctx.bot.backoff, self.rng)
        self._redial_at = now + retry_in
        self.ctx.emit(ConnectionUpdate("close", reason=reason, attempt=self.connection_attempts,
                                       retry_in=round(retry_in, 3)))

    def _give_up_after(self, reason: str) -> None:
        limit = self.ctx.bot.max_reconnect_attempts
        if self.connection_attempts >= limit:
            self.ctx.emit(ConnectionUpdate("close", reason=reason, attempt=self.connection_attempts))
            raise BotCrash("reconnect-exhausted", f"gave up after {self.connection_attempts} connection attempts "
                                                  f"(max_reconnect_attempts = {limit}); last: {reason}")

    def _phone_number(self) -> str | None:
        me = self.client.me if self.client is not None else None  # never get_me(): it can panic in Go
        user = getattr(getattr(me, "JID", None), "User", "")
        return user or self.phone

    # -- acting as the bot ------------------------------------------------------------------------
    def _online_client(self) -> NewClient:
        if self.status is not BotStatus.ONLINE or self.client is None:
            raise CommandError(f"bot is {self.status}, not connected")
        return self.client

    # Chosen message ids: whatsmeow sends under SendRequestExtra.ID when it is set, but neonize
    # 0.5.2 cannot pass it. NewClient.send_message (neonize/client.py) has no id parameter, and
    # its Go binding SendMessage(id, to, message) (neonize/_binder.py; goneonize/main.go) builds
    # ``whatsmeow.SendRequestExtra{}`` with only AdditionalNodes, so whatsmeow generates a new id
    # on every call (send.go: ``if len(req.ID) == 0 { req.ID = cli.GenerateMessageID() }``).
    # So keeps_message_id stays False and new_message_id() None: the outbox learns the id from
    # the response and never retries an interrupted send blindly (docs/sends.md).
    # Every network call below runs on the I/O thread (self.offload, worker/offload.py) and the
    # method returns a Pending: the loop keeps beating while whatsmeow waits for the server, and
    # what follows the call (the echo, the reply) runs on the loop when it is done.
    def send_text(self, to: str, text: str, quote: str | None = None, mentions: list[str] | None = None, *,
                  message_id: str | None = None) -> Any:
        no_chosen_id(message_id)
        client = self._online_client()
        message = self.text_message(text, quote, mentions)
        sending = self.offload(self._call, "send", client.send_message, parse_jid(to), message)
        return sending.then(lambda response: self._echo(response, to, text=text, mentions=mentions or None))

    def set_presence(self, presence: str, chat: str | None = None) -> Any:
        client = self._online_client()
        if presence in ("available", "unavailable"):
            state = Presence.AVAILABLE if presence == "available" else Presence.UNAVAILABLE
            return self.offload(self._call, "presence", client.send_presence, state).then(
                lambda _: {"presence": presence})
        if chat is None:
            raise CommandError(f"presence {presence!r} is shown in one chat: give 'chat'")
        shown = ChatPresence.CHAT_PRESENCE_PAUSED if presence == "paused" else ChatPresence.CHAT_PRESENCE_COMPOSING
        media = (ChatPresenceMedia.CHAT_PRESENCE_MEDIA_AUDIO if presence == "recording"
                 else ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT)
        return self.offload(self._call, "presence", client.send_chat_presence, parse_jid(chat), shown, media).then(
            lambda _: {"presence": presence, "chat": chat})

    def mark_read(self, chat: str, message_ids: list[str], sender: str | None = None) -> Any:
        client = self._online_client()
        marking = self.offload(self._call, "mark_read", client.mark_read, *message_ids, chat=parse_jid(chat),
                               sender=parse_jid(sender or chat), receipt=ReceiptType.READ)
        return marking.then(lambda _: {"chat": chat, "read": list(message_ids)})

    def logout(self) -> dict[str, Any]:
        client = self._online_client()
        try:
            client.logout()  # whatsmeow removes the device from the store itself
        except Exception as exc:
            raise CommandError(f"logout failed: {exc}") from exc
        self.status = BotStatus.OFFLINE
        self.ctx.emit(CredsUpdate(verified=False, phone_number=self._phone_number(), last_updated=time.time(),
                                  reason="logged-out"))
        raise FatalBotError("logged-out", "logged out by the operator; pair the bot again", status=401)
