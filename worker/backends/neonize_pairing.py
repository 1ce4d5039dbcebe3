"""Pairing a neonize session: QR codes (and qr.png), the phone code, whatsmeow's login status,
and the pairing that runs out (worker/pairing.py). Mixed into NeonizeBackend; like the rest of
the backend, the callbacks Go calls only enqueue, and the loop does the work.
"""

from __future__ import annotations

import ctypes
import io
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import segno

from protocol import BotStatus, ConnectionUpdate

from .. import pairing
from ..atomic import write_atomic

if TYPE_CHECKING:
    from .neonize import NeonizeBackend

#: the latest QR code as an image, for headless servers; removed once connected or run out
QR_FILE = "qr.png"


# -- what Go threads hand to the main loop ------------------------------------------------------
@dataclass(frozen=True)
class _Qr:
    code: str


@dataclass(frozen=True)
class _PairCode:
    code: str | None
    error: str | None = None


@dataclass(frozen=True)
class _LoginStatus:
    """neonize's login-status callback: whatsmeow's QR channel events other than a code
    (``success``, ``timeout``, ``err-...``)."""

    status: str


class NeonizePairing:
    # -- Go threads --------------------------------------------------------------------------------
    def _on_qr(self: NeonizeBackend, _client: Any, data: bytes) -> None:
        self._push(_Qr(data.decode(errors="replace")))

    def _on_login_status(self: NeonizeBackend, _uuid: int, status: int) -> None:
        """Replaces neonize's ``__onLoginStatus``, which prints the status pointer to fd 1."""
        self._push(_LoginStatus(ctypes.string_at(status).decode(errors="replace") if status else ""))

    def _pair_phone(self: NeonizeBackend, client: Any, phone: str) -> None:
        try:
            self._push(_PairCode(client.PairPhone(phone, show_push_notification=True)))
        except Exception as exc:
            self._push(_PairCode(None, str(exc) or exc.__class__.__name__))

    # -- the loop -----------------------------------------------------------------------------------
    def _show_qr(self: NeonizeBackend, code: str) -> None:
        image = io.BytesIO()
        segno.make_qr(code).save(image, kind="png", scale=6, border=4)
        write_atomic(self.ctx.bot_dir / QR_FILE, image.getvalue())
        self.ctx.emit(ConnectionUpdate("connecting", qr=code, attempt=self.connection_attempts))
        if self.ctx.bot.phone_number and not self._pairing and self.client is not None:
            # PairPhone needs a live client, which the first QR proves; it waits on the network
            self._pairing = True
            threading.Thread(target=self._pair_phone, args=(self.client, self.ctx.bot.phone_number),
                             name="neonize-pair", daemon=True).start()

    def _login_status(self: NeonizeBackend, status: str) -> None:
        self.ctx.log.info("login status from whatsmeow's QR channel: %s", status or "(empty)")
        if status == "timeout" and self._qr_at is not None:
            self._pairing_timed_out("the QR codes ran out unused (whatsmeow disconnects and does not retry)")

    def _pairing_timed_out(self: NeonizeBackend, how: str) -> None:
        self._qr_at = None
        self.status = BotStatus.OFFLINE
        (self.ctx.bot_dir / QR_FILE).unlink(missing_ok=True)  # a stale code must not be scanned
        self.ctx.emit(ConnectionUpdate("close", reason=f"pairing timed out: {how}", attempt=self.connection_attempts))
        raise pairing.timed_out(self.ctx.bot_dir, self.ctx.bot.whatsapp.pairing_lives, how)
