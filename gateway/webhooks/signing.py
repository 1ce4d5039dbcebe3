"""``Botvisor-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`` (Stripe's scheme).

Signing the timestamp with the body lets a receiver refuse a replay: a captured request
re-sent later carries an old ``t`` that it cannot change without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "Botvisor-Signature"
#: a receiver's default tolerance for ``t``, seconds
TOLERANCE = 300


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    mac = hmac.digest(secret, b"%d.%s" % (timestamp, body), hashlib.sha256).hex()  # one-shot: in C
    return f"t={timestamp},v1={mac}"


def verify(secret: bytes, body: bytes, header: str, tolerance: float = TOLERANCE, now: float | None = None) -> bool:
    """What a receiver does (docs/webhooks.md shows it standalone)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance:
        return False
    expected = sign(secret, body, t).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
