"""Pairing that runs out: the lives a bot gets to show an unused QR or pair code.

whatsmeow emits its QR codes for about 160 s (the first for 60 s, then five more for 20 s each:
qrchan.go ``emitQRs``), then disconnects on purpose: no Disconnected event, no reconnect, since
there is no stored session to reconnect with. The worker ends then, so the restart policy gives
a fresh QR in the next life; after ``[bots.whatsapp] pairing_lives`` such lives in a row the bot
goes to ``failed`` instead of showing codes to nobody for ever. The count lives in the bot's
directory (one small file) and is cleared by a successful pairing. Both backends use this.
"""

from __future__ import annotations

import json
from pathlib import Path

from .atomic import write_atomic
from .errors import BotCrash, FatalBotError

PAIRING_FILE = "pairing-lives.json"
#: whatsmeow's QR schedule: 60 s for the first code, 20 s for each of the next five
QR_LIFETIME = 60.0 + 5 * 20.0
#: a pairing with no new code for this long has run out, whatever the login callback said
QR_STALE_AFTER = 60.0 + 15.0


def lives_used(bot_dir: Path) -> int:
    try:
        return int(json.loads((bot_dir / PAIRING_FILE).read_text())["lives"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def paired(bot_dir: Path) -> None:
    (bot_dir / PAIRING_FILE).unlink(missing_ok=True)


def timed_out(bot_dir: Path, pairing_lives: int, how: str) -> BotCrash | FatalBotError:
    """Count this life's unused pairing; the error to end the worker with."""
    used = lives_used(bot_dir) + 1
    write_atomic(bot_dir / PAIRING_FILE, json.dumps({"lives": used}).encode())
    reason = f"pairing timed out: {how} (life {used} of pairing_lives = {pairing_lives})"
    if used >= pairing_lives:
        paired(bot_dir)  # the count starts over when an operator starts the bot again
        return FatalBotError("pairing-timeout", f"{reason}; nobody paired the bot: start it again to get new codes")
    return BotCrash("pairing-timeout", f"{reason}; the next life shows a new code")
