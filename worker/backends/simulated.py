"""SIMULATED WhatsApp session, offline and deterministic: for demos and tests only.

It models what the neonize backend does against the real network, with the same event shapes
and fault classes: connecting -> (QR codes until "scanned" when unpaired) -> open; incoming
messages and presence at configured rates; disconnects with in-worker reconnects and backoff;
logout and temporary ban as fatal errors; crash and hang for the supervisor's tests. Its
session is a JSON file in the bot's own directory. Nothing here talks to WhatsApp.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections import deque
from typing import Any

from protocol import (
    BotStatus,
    ConnectionUpdate,
    EventData,
    MessageUpsert,
    PresenceUpdate,
    exit_codes,
)
from protocol.backoff import reconnect_delay
from protocol.events import EVENT_OF_DATA
from protocol.schema import to_mapping

from .. import pairing
from ..atomic import write_atomic
from ..credentials import CredentialsManager
from ..errors import BotCrash, CommandError, FatalBotError
from . import simserver
from .base import Backend, BackendContext
from .sim_deliveries import Deliveries
from .simulated_model import Injector, MessageIds
from .simulated_ops import SimulatedGroups, SimulatedOperations

SESSION_FILE = "creds.json"
#: messages generated in one poll at most, so heartbeats keep flowing at any rate
MAX_BATCH = 256
#: sends the backend remembers for tests (SimulatedBackend.sent), newest kept
SENT_KEPT = 10_000
PRESENCES = ("available", "unavailable", "composing", "paused")


class SimulatedBackend(SimulatedOperations, Backend):
    name = "simulated"
    keeps_message_id = True  # as whatsmeow with SendRequestExtra.ID (docs/sends.md)

    def __init__(self, ctx: BackendContext) -> None:
        super().__init__(ctx)
        self.knobs = ctx.bot.simulated
        self.rng = random.Random(f"{self.knobs.seed}:{ctx.bot.id}")
        self.session_path = ctx.bot_dir / SESSION_FILE
        self.creds = CredentialsManager.for_bot_dir(ctx.bot_dir)
        self.phone = ctx.bot.phone_number or f"1555{self.rng.randrange(10**7):07d}"
        self.me = f"{self.phone}@s.whatsapp.net"
        self.started_at = 0.0
        self.opened_at: float | None = None
        self._connect_at: float | None = None
        self._next_qr: float | None = None
        #: when this life's first QR is due (the pair code follows it, with phone_number set)
        self._qr_started: float | None = None
        self._pair_at: float | None = None
        self._pairing_ends: float | None = None
        self._next_message: float | None = None
        self._next_presence: float | None = None
        self._next_disconnect: float | None = None
        self._next_print: float | None = None
        self._redial_at: float | None = None
        self._failures_left = 0
        self._message_count = 0
        self._prints = 0
        self._ballast: bytearray | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._stream: int | None = None  # the simulated server's claim on this account (simserver.py)
        self.ids = MessageIds(ctx.bot_dir)
        self.injector = Injector(self.ids, self.recent, self.me)
        self.groups = SimulatedGroups()
        #: ringing calls: call id -> caller; contacts whose presence the bot subscribed to
        self.calls: dict[str, str] = {}
        self.subscribed: set[str] = set()
        #: [bots.simulated] script entries still to play, by ``at`` (seconds after open)
        self._script: list[dict[str, Any]] = sorted(self.knobs.script, key=lambda e: e["at"])
        self._script_at: float | None = None
        #: what the bot "sent" lately, oldest first, as plain dicts (op, to, text/..., message_id),
        #: for tests; bounded: a simulated bot replying for days must not grow without end
        self.sent: deque[dict[str, Any]] = deque(maxlen=SENT_KEPT)
        self.deliveries = Deliveries(ctx.bot_dir)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, now: float) -> None:
        self.started_at = now
        if self.knobs.paired and not self.session_path.exists():
            self._save_session()
        if self.knobs.print_every:
            self._next_print = now
        self._dial(now)

    def _dial(self, now: float) -> None:
        self.connection_attempts += 1
        self.status = BotStatus.LOADING
        self.ctx.emit(ConnectionUpdate("connecting", attempt=self.connection_attempts))
        if self._failures_left > 0:
            self._failures_left -= 1
            reason = "dial failed: simulated network error"
            if self.connection_attempts >= self.ctx.bot.max_reconnect_attempts:  # as neonize: no pointless wait
                self.ctx.emit(ConnectionUpdate("close", reason=reason, attempt=self.connection_attempts))
                raise BotCrash("reconnect-exhausted", f"gave up after {self.connection_attempts} connection attempts")
            retry_in = reconnect_delay(self.connection_attempts, self.ctx.bot.backoff, self.rng)
            self.ctx.emit(ConnectionUpdate("close", reason=reason, attempt=self.connection_attempts,
                                           retry_in=round(retry_in, 3)))
            self._connect_at = None
            self._redial_at = now + retry_in
            return
        self._redial_at = None
        if self.session_path.exists():
            self._connect_at = now + self.knobs.connect_delay
        else:
            self._next_qr = self._qr_started = now
            self._pairing_ends = now + self.knobs.pairing_timeout  # as whatsmeow's codes run out
            if self.knobs.pair_after is not None:
                self._pair_at = now + self.knobs.pair_after

    def _open(self, now: float) -> None:
        self._connect_at = None
        if self._stream is None:
            self._stream = simserver.claim(self.me, self.ctx.bot.id)
        self.opened_at = now
        self.status = BotStatus.ONLINE
        attempt, self.connection_attempts = self.connection_attempts, 0
        self.ctx.emit(ConnectionUpdate("open", attempt=attempt))
        self.ctx.emit(self.creds.record(self.ctx.bot, "connected", verified=True, phone_number=self.phone))
        if self.knobs.message_rate:
            self._next_message = now + 1.0 / self.knobs.message_rate
        if self.knobs.presence_rate:
            self._next_presence = now + 1.0 / self.knobs.presence_rate
        if self.knobs.disconnect_every:
            self._next_disconnect = now + self.knobs.disconnect_every
        if self._script and self._script_at is None:
            self._script_at = now  # the script's clock starts at the first open of this life
        if self.knobs.spawn_child and self._child is None:
            self._child = subprocess.Popen(["sleep", "3600"], stdin=subprocess.DEVNULL)
            self.ctx.log.info("started child process %d", self._child.pid)
        if self.knobs.allocate_mb and self._ballast is None:
            self._ballast = bytearray(os.urandom(16)) * (self.knobs.allocate_mb * 65536)

    def _close(self, now: float, reason: str) -> None:
        self.status = BotStatus.OFFLINE
        self.opened_at = None
        self._next_message = self._next_presence = self._next_disconnect = None
        retry_in = reconnect_delay(1, self.ctx.bot.backoff, self.rng)
        self.ctx.emit(ConnectionUpdate("close", reason=reason, attempt=0, retry_in=round(retry_in, 3)))
        self._failures_left = self.knobs.reconnect_failures
        self._redial_at = now + retry_in

    def stop(self) -> None:
        self.deliveries.close()
        super().stop()

    # -- the loop's entry point --------------------------------------------------------
    def poll(self, now: float) -> float | None:
        since_start = now - self.started_at
        k = self.knobs
        if k.crash_after is not None and since_start >= k.crash_after:
            os._exit(exit_codes.CRASH)  # abrupt on purpose: no bye, like a segfault
        if k.hang_after is not None and since_start >= k.hang_after:
            self._hang()
        if k.logout_after is not None and since_start >= k.logout_after:
            self._logged_out("the simulated phone removed this device")
        if k.ban_after is not None and since_start >= k.ban_after:
            expires = time.time() + 3600
            # every fatal error marks the creds unverified, as the neonize backend does
            self.ctx.emit(self.creds.record(self.ctx.bot, "temporary-ban", verified=False, phone_number=self.phone))
            raise FatalBotError("temporary-ban", "temporarily banned (simulated reason 101: too many messages "
                                "to non-contacts)", status=402, expires_at=expires)
        if self._next_print is not None and now >= self._next_print:
            self._prints += 1  # numbered, so a test can tell that no line was lost
            print(f"simulated stdout line {self._prints} from {self.ctx.bot.id}", flush=True)
            print(f"simulated stderr line {self._prints} from {self.ctx.bot.id}", file=sys.stderr, flush=True)
            self._next_print = now + (k.print_every or 1.0)
        if self._redial_at is not None and now >= self._redial_at:
            self._dial(now)
        if self._next_qr is not None:
            if self._pair_at is not None and now >= self._pair_at:
                self._paired(now)
            elif self._pairing_ends is not None and now >= self._pairing_ends:
                self._pairing_timed_out()
            elif now >= self._next_qr:
                first = self._next_qr == self._qr_started
                self.ctx.emit(ConnectionUpdate("connecting", qr=self._qr_code(), attempt=self.connection_attempts))
                if first and self.ctx.bot.phone_number:  # as neonize: PairPhone once the first QR proves the link
                    self.ctx.emit(ConnectionUpdate("connecting", pair_code=self._pair_code(),
                                                   attempt=self.connection_attempts))
                self._next_qr = now + k.qr_every
        if self._connect_at is not None and now >= self._connect_at:
            self._open(now)
        if self.opened_at is not None:
            if self._next_disconnect is not None and now >= self._next_disconnect:
                self._close(now, "stream error: simulated disconnect")
            else:
                self._emit_due_traffic(now)
                self._play_script(now)
        return self._next_deadline(now)

    def _play_script(self, now: float) -> None:
        while self._script and self._script_at is not None and now >= self._script_at + self._script[0]["at"]:
            entry = self._script.pop(0)
            try:
                self._deliver(self.injector.build({k: v for k, v in entry.items() if k != "at"}))
            except CommandError as exc:  # a bad entry is reported, and the rest still plays
                self.ctx.log.warning("script entry at %s s skipped: %s", entry["at"], exc)

    def _emit_due_traffic(self, now: float) -> None:
        sent = 0
        while self._next_message is not None and now >= self._next_message and sent < MAX_BATCH:
            self._message_count += 1
            sent += 1
            chat = f"1555{self.rng.randrange(10**7):07d}@s.whatsapp.net"
            self._deliver(MessageUpsert(
                id=self.ids.next(), chat=chat, sender=chat, timestamp=time.time(),
                from_me=False, text=f"simulated message {self._message_count}", push_name="Simulated",
            ))
            self._next_message += 1.0 / self.knobs.message_rate
            if self.knobs.message_limit and self._message_count >= self.knobs.message_limit:
                self._next_message = None
        if self._next_message is not None and now - self._next_message > 1.0:
            self._next_message = now  # fell behind by over a second: do not burst to catch up
        while self._next_presence is not None and now >= self._next_presence:
            jid = f"1555{self.rng.randrange(10**7):07d}@s.whatsapp.net"
            self.ctx.emit(PresenceUpdate(jid=jid, presence=self.rng.choice(PRESENCES), last_seen=time.time()))
            self._next_presence = max(now, self._next_presence + 1.0 / self.knobs.presence_rate)

    def _next_deadline(self, now: float) -> float | None:
        candidates = [self._connect_at, self._next_qr, self._pair_at, self._pairing_ends, self._next_message,
                      self._next_presence,
                      self._next_disconnect, self._next_print, self._redial_at]
        if self._script and self._script_at is not None and self.opened_at is not None:
            candidates.append(self._script_at + self._script[0]["at"])
        for after in (self.knobs.crash_after, self.knobs.hang_after, self.knobs.logout_after, self.knobs.ban_after):
            if after is not None:
                candidates.append(self.started_at + after)
        return min((c for c in candidates if c is not None), default=None)

    # -- faults and pairing ------------------------------------------------------------
    def _hang(self) -> None:
        """Stop everything, heartbeats included, while the process stays alive."""
        self.ctx.log.warning("hang_after reached: hanging on purpose")
        while True:
            time.sleep(3600)

    def _pair_code(self) -> str:
        """A phone pairing code as WhatsApp shows it: eight characters, typed on the phone."""
        code = "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTVWXYZ23456789") for _ in range(8))
        return f"{code[:4]}-{code[4:]}"

    def _qr_code(self) -> str:
        ref = "".join(self.rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(24))
        return f"2@{ref},SIMULATED,{self.ctx.bot.id}"

    def _pairing_timed_out(self) -> None:
        """As the neonize backend: whatsmeow disconnects when its codes run out and never retries."""
        self._next_qr = self._pair_at = self._pairing_ends = None
        self.status = BotStatus.OFFLINE
        how = f"the QR codes ran out unused after {self.knobs.pairing_timeout:g} s"
        self.ctx.emit(ConnectionUpdate("close", reason=f"pairing timed out: {how}", attempt=self.connection_attempts))
        raise pairing.timed_out(self.ctx.bot_dir, self.ctx.bot.whatsapp.pairing_lives, how)

    def _paired(self, now: float) -> None:
        self._next_qr = self._pair_at = self._pairing_ends = None
        pairing.paired(self.ctx.bot_dir)
        self._save_session()
        self.ctx.emit(self.creds.record(self.ctx.bot, "paired", verified=True, phone_number=self.phone))
        self.creds.backup_credentials(self.ctx.bot)
        self._connect_at = now + self.knobs.connect_delay

    def _save_session(self) -> None:
        session = {"simulated": True, "me": self.me, "phone_number": self.phone, "paired_at": time.time()}
        write_atomic(self.session_path, json.dumps(session).encode())

    def _logged_out(self, why: str) -> None:
        self.status = BotStatus.OFFLINE
        self.creds.clear_all_credentials(self.ctx.bot)  # backed up first, as the original does
        self.ctx.emit(self.creds.record(self.ctx.bot, "logged-out", verified=False, phone_number=self.phone))
        raise FatalBotError("logged-out", f"logged out: {why}; pair the bot again", status=401)

    # -- acting as the bot -------------------------------------------------------------
    def _require_online(self) -> None:
        if self.status is not BotStatus.ONLINE:
            raise CommandError(f"bot is {self.status}, not connected")

    def new_message_id(self) -> str:
        return self.ids.next("SIMOUT")  # unique across restarts, like whatsmeow's

    def _transmit(self, message_id: str, op: str, to: str, **content: Any) -> None:
        """Hand one outgoing message to the simulated network (its receiver keeps one message per
        id) and log it in the delivery log; a resend under the same id is upserted again after."""
        self.deliveries.record(message_id, op, to, **content)
        crash_at = self.knobs.crash_after_deliveries
        if crash_at is not None and self.deliveries.count == crash_at:
            os._exit(exit_codes.CRASH)  # delivered, but the outbox never hears of it

    def _deliver(self, data: EventData) -> None:
        """Hand incoming traffic to the bot as the real backend would (messages remembered by id)."""
        if isinstance(data, MessageUpsert):
            self.recent.add(data)
        self._track(data)
        self.ctx.emit(data)

    def simulate(self, args: dict[str, Any]) -> dict[str, Any]:
        """Inject one incoming message, reaction, edit, revoke, receipt, call, group change, ..."""
        self._require_online()
        data = self.injector.build(args)
        self._deliver(data)
        return {"event": str(EVENT_OF_DATA[type(data)]), "id": getattr(data, "id", None) or getattr(data, "call_id", None),
                "data": to_mapping(data)}

    def _record_sent(self, message: MessageUpsert, op: str, **fields: Any) -> None:
        self._transmit(message.id, op, message.chat, **fields)
        self.recent.add(message)
        self.sent.append({"op": op, "to": message.chat, **fields, "message_id": message.id,
                          "timestamp": message.timestamp})
        self.ctx.emit(message)

    def set_presence(self, presence: str, chat: str | None = None) -> dict[str, Any]:
        self._require_online()
        self.ctx.emit(PresenceUpdate(jid=self.me, presence=presence, chat=chat,  # type: ignore[arg-type]
                                     last_seen=time.time()))
        return {"presence": presence, "chat": chat} if chat else {"presence": presence}

    def mark_read(self, chat: str, message_ids: list[str], sender: str | None = None) -> dict[str, Any]:
        self._require_online()
        return {"chat": chat, "read": list(message_ids)}

    def logout(self) -> dict[str, Any]:
        self._logged_out("logged out by the operator")
        return {}  # not reached
