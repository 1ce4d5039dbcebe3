"""The durable outbox: every send a bot accepts is stored before it is answered, and goes out.

Every operation that sends a WhatsApp message (``send`` now; ``send_media``, ``react``,
``edit``, ``revoke`` as they land) is handed here as ``submit(op, args)``: the send gets an id,
its WhatsApp message id is chosen (``Backend.new_message_id()``), and the row is committed to
``outbox.sqlite3`` in the bot's directory before the caller hears anything. The reply is
``sent`` (it went at once) or ``queued`` (it waits for the rate limit, or behind others); the
worker's loop sends what is queued in order, no faster than the token bucket allows, and every
send's outcome is published once as a ``send-status`` event carrying its id. A backend whose
call runs on the I/O thread (worker/offload.py) returns a Pending: the reply to an immediate
send waits for it, and the next queued send starts only when it is done (strict order); the
outcome is recorded on the loop when the call finishes.

The guarantee (docs/sends.md): a send's attempt is recorded before the backend is called, so a
worker that dies mid-attempt leaves a ``sending`` row. A new worker re-attempts it under the
same WhatsApp id when the backend sends under the id it is given (``keeps_message_id``): the
receiver keeps one message per id, so attempts are at-least-once and messages at-most-once per
id. A backend that cannot keep the id (neonize 0.5.2) gets no blind retry: the send is reported
``failed`` as possibly delivered, because a retry there would be a second message.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable

from protocol import BotStatus, ErrorEvent, EventData, SendStatus

from .backends.base import Backend
from .errors import CommandError
from .offload import Pending
from .outbox_store import KEEP_FINISHED, OUTBOX_FILE, Entry, OutboxFileError, OutboxStore
from .ratelimit import TokenBucket

log = logging.getLogger("botvisor.worker.outbox")

#: operation -> the backend method that performs it, called as method(**args, message_id=...)
SENDING_METHODS: dict[str, str] = {
    "send": "send_text", "send_media": "send_media", "react": "react", "edit": "edit", "revoke": "revoke",
}
#: attempts of one send before it is failed for good (a send that kills the worker each time
#: must not keep the bot in a crash loop)
MAX_ATTEMPTS = 5
DEFAULT_MAX_PENDING = 1000


def submit(backend: Backend, op: str, args: dict[str, Any]) -> Any:
    """The one way a sending operation's checked ``args`` go out: into the bot's durable outbox,
    stored before this returns, then sent now or queued. A backend driven outside a worker loop
    (no outbox) sends at once, under an id it chooses itself."""
    if backend.outbox is None:
        return getattr(backend, SENDING_METHODS[op])(**args)
    return backend.outbox.submit(op, args, time.monotonic())


#: random bytes for send ids, drawn from the OS in blocks (one getrandom per 512 sends, not one
#: per send); emptied in a forked child so no two processes hand out the same ids
_random_ids = bytearray()
os.register_at_fork(after_in_child=_random_ids.clear)


def new_send_id() -> str:
    """16 hex digits, random: unique across restarts, bots and a deleted outbox file."""
    if not _random_ids:
        _random_ids.extend(secrets.token_bytes(4096))
    chunk = _random_ids[-8:]
    del _random_ids[-8:]
    return chunk.hex()


class Outbox:
    def __init__(self, backend: Backend, bucket: TokenBucket, path: Path, emit: Callable[[EventData], None], *,
                 max_pending: int = DEFAULT_MAX_PENDING, sync: str = "full") -> None:
        self.backend, self.bucket, self.emit = backend, bucket, emit
        self.max_pending = max_pending
        self.store = _open_store(Path(path), emit, sync)
        #: pending sends in order (the store is the durable copy; this spares a query per loop turn)
        self.queue: deque[Entry] = deque()
        #: the send whose attempt runs on the I/O thread now (worker/offload.py); the next one
        #: starts only when it is done, so sends go out in their strict order
        self.inflight: Entry | None = None
        self.sent = self.failed = 0
        self._resume()

    @classmethod
    def for_bot_dir(cls, backend: Backend, bucket: TokenBucket, bot_dir: Path, emit: Callable[[EventData], None],
                    **kwargs: Any) -> Outbox:
        return cls(backend, bucket, Path(bot_dir) / OUTBOX_FILE, emit, **kwargs)

    def ready(self) -> bool:
        return self.backend.status is BotStatus.ONLINE

    # -- after a restart ---------------------------------------------------------------------------
    def _resume(self) -> None:
        resumed = 0
        for entry in self.store.pending():
            if entry.state == "sending" and not self._resumable(entry):
                continue
            self.queue.append(entry)
            resumed += 1
        if resumed:
            log.info("%d send(s) from before this worker wait in the outbox; sending them in order", resumed)

    def _resumable(self, entry: Entry) -> bool:
        """An attempt was under way when the last worker ended: retry it, or report it."""
        if entry.attempts >= MAX_ATTEMPTS:
            self._failed(entry, f"gave up after {entry.attempts} attempts, the last one interrupted by a "
                                "worker exit")
            return False
        if self.backend.keeps_message_id and entry.message_id:
            log.info("send %s was interrupted during attempt %d; retrying it under the same message id %s",
                     entry.id, entry.attempts, entry.message_id)
            self.store.requeue(entry)
            return True
        self._failed(entry, f"interrupted: the worker ended during attempt {entry.attempts}, so it may have been "
                            f"delivered; not retried, because the {self.backend.name} backend cannot resend "
                            "under the same WhatsApp message id (a retry could be a second message)")
        return False

    # -- accepting a send ------------------------------------------------------------------------
    def submit(self, op: str, args: dict[str, Any], now: float) -> dict[str, Any]:
        """Store the send, then send it now if nothing waits and the limit allows; else queue it."""
        if op not in SENDING_METHODS:
            raise CommandError(f"{op!r} is not a sending operation (known: {', '.join(sorted(SENDING_METHODS))})")
        if not self.queue and not self.ready():  # as before the outbox: refused, nothing stored
            raise CommandError(f"bot is {self.backend.status}, not connected")
        if len(self.queue) >= self.max_pending:
            raise CommandError(f"the outbox is full: {len(self.queue)} sends wait (outbox_max = {self.max_pending}); "
                               "try again later")
        send_id, message_id = new_send_id(), self.backend.new_message_id()
        if not self.queue and self.inflight is None and self.bucket.wait(now) == 0:
            entry = self.store.add(send_id, op, args, message_id, sending=True)  # durable before the attempt
            try:
                result = self._attempt(entry)
            except Exception as exc:  # the caller hears why; the send-status event says it too
                return self._immediate_failed(entry, exc)
            if isinstance(result, Pending):  # on the I/O thread: the reply waits for the outcome
                self.inflight = entry
                return result.then(lambda value: self._immediate_sent(entry, value, time.monotonic()),
                                   lambda exc: self._immediate_failed(entry, exc))
            return self._immediate_sent(entry, result, now)
        entry = self.store.add(send_id, op, args, message_id)
        self.queue.append(entry)
        position = len(self.queue)
        return {"id": send_id, "state": "queued", "message_id": message_id, "to": entry.to, "position": position,
                "expected_delay": round(self.expected_delay(now, position), 3)}

    def _immediate_sent(self, entry: Entry, result: Any, now: float) -> dict[str, Any]:
        self.inflight = None
        self.bucket.take(now)  # an immediate send that failed spends no token
        return self._sent(entry, result if isinstance(result, dict) else {})

    def _immediate_failed(self, entry: Entry, exc: BaseException) -> Any:
        self.inflight = None
        if not isinstance(exc, Exception):
            raise exc
        reason = _reason(exc)
        self._failed(entry, reason)
        raise CommandError(f"{reason} (send {entry.id})") from exc

    def lookup(self, send_id: str) -> dict[str, Any]:
        """A send's row as plain data (for the ``send_status`` operation)."""
        entry = self.store.get(send_id)
        if entry is None:
            raise CommandError(f"no send {send_id!r} in this bot's outbox (it keeps every pending send and the "
                               f"last {KEEP_FINISHED} finished ones)")
        found: dict[str, Any] = {"id": entry.id, "state": entry.state, "op": entry.op, "message_id": entry.message_id,
                                 "to": entry.to, "attempts": entry.attempts, "created_at": entry.created_at}
        if entry.reason is not None:
            found["reason"] = entry.reason
        return found

    def expected_delay(self, now: float, position: int) -> float:
        """Seconds until the send at ``position`` (1-based) goes, if the bot stays connected."""
        return self.bucket.wait(now, position)

    # -- the worker loop's turn -------------------------------------------------------------------
    def flush(self, now: float) -> float | None:
        """Send every queued send that is due; return when the next one is (None: nothing to wait for)."""
        while self.queue and self.ready() and self.inflight is None:
            if not self.bucket.take(now):
                return now + self.bucket.wait(now)
            entry = self.queue[0]
            self.store.start_attempt(entry)  # recorded before the backend is called: the crash window
            try:
                result = self._attempt(entry)
            except Exception as exc:
                self._queued_failed(entry, exc)
                continue
            if isinstance(result, Pending):  # on the I/O thread: the next send waits for this one
                self.inflight = entry
                result.then(lambda value, entry=entry: self._queued_sent(entry, value),
                            lambda exc, entry=entry: self._queued_failed(entry, exc))
                return None  # the loop calls again when the outcome is in
            self._queued_sent(entry, result)
        return None  # empty, or waiting for the connection: the loop calls again on its next turn

    def _queued_sent(self, entry: Entry, result: Any) -> None:
        self.inflight = None
        self.queue.popleft()
        self._sent(entry, result if isinstance(result, dict) else {})
        log.info("sent queued %s %s to %s after %.1f s", entry.op, entry.id, entry.to, time.time() - entry.created_at)

    def _queued_failed(self, entry: Entry, exc: BaseException) -> None:
        self.inflight = None
        if not isinstance(exc, Exception):
            raise exc
        if self.backend.keeps_message_id and not self.ready() and entry.attempts < MAX_ATTEMPTS:
            # the connection went during the attempt: again under the same id once it is back
            log.warning("send %s: attempt %d failed while the bot went offline (%s); it waits for the "
                        "connection", entry.id, entry.attempts, exc)
            self.store.requeue(entry)
            return
        self.queue.popleft()
        self._failed(entry, _reason(exc))

    def _attempt(self, entry: Entry) -> Any:
        """Call the backend's sending method: its result, or a Pending when the call runs on the I/O thread."""
        method = getattr(self.backend, SENDING_METHODS[entry.op])
        return method(**entry.args, message_id=entry.message_id)

    # -- outcomes: stored, then published once -----------------------------------------------------
    def _sent(self, entry: Entry, result: dict[str, Any]) -> dict[str, Any]:
        message_id = result.get("id") or entry.message_id
        self.store.finish(entry, "sent", message_id=message_id, result=result)
        self.sent += 1
        timestamp = result.get("timestamp")
        self.emit(SendStatus(id=entry.id, state="sent", op=entry.op, message_id=message_id, to=entry.to,
                             attempts=entry.attempts, timestamp=timestamp if isinstance(timestamp, float) else None))
        extra = {k: v for k, v in result.items() if k != "id"}
        return {**extra, "id": entry.id, "state": "sent", "message_id": message_id, "to": entry.to}

    def _failed(self, entry: Entry, reason: str) -> None:
        self.store.finish(entry, "failed", reason=reason)
        self.failed += 1
        log.warning("send %s (%s to %s) failed: %s", entry.id, entry.op, entry.to, reason)
        self.emit(SendStatus(id=entry.id, state="failed", op=entry.op, message_id=entry.message_id, to=entry.to,
                             reason=reason, attempts=entry.attempts, timestamp=time.time()))

    def close(self) -> None:
        if self.inflight is not None:  # its row stays 'sending': the next worker handles it as interrupted
            log.warning("send %s was still in flight on the I/O thread when the worker stopped", self.inflight.id)
        if self.queue:
            log.info("%d send(s) stay in the outbox and go out after the next start", len(self.queue))
        self.store.close()


def _reason(exc: Exception) -> str:
    return str(exc) if isinstance(exc, CommandError) else f"{exc.__class__.__name__}: {exc}"


def _open_store(path: Path, emit: Callable[[EventData], None], sync: str) -> OutboxStore:
    """Open the outbox; a file that is not a sound database is set aside (kept, reported), not fatal."""
    try:
        return OutboxStore(path, sync)
    except OutboxFileError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        for suffix in ("", "-wal", "-shm"):
            if os.path.lexists(f"{path}{suffix}"):
                os.replace(f"{path}{suffix}", f"{aside}{suffix}")
        message = f"the outbox could not be read ({exc}); it was moved to {aside.name} and a new one started"
        log.error("%s", message)
        emit(ErrorEvent(code="corrupt-outbox", message=message, file=str(aside)))
        return OutboxStore(path, sync)
