"""Message authentication: a worker may only speak for its own bot.

Each worker gets a random secret at spawn (inside the pickled process arguments, never in
argv or the environment) and appends HMAC-SHA256(secret, topic || 0x00 || payload) as a third
frame. The supervisor verifies it with that bot's secret and strips it before republishing,
so neither secrets nor signatures reach a tap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

try:  # OpenSSL's HMAC object itself: copy, update and digest in C (hmac.HMAC wraps each in Python)
    from _hashlib import hmac_new as _keyed
except ImportError:  # a Python built without OpenSSL: the same calls through hmac.HMAC
    def _keyed(key: bytes, digestmod: str) -> hmac.HMAC:  # type: ignore[misc]
        return hmac.new(key, digestmod=digestmod)

SECRET_BYTES = 32
SIGNATURE_BYTES = 32


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def sign(secret: bytes, topic: bytes, payload: bytes) -> bytes:
    return hmac.digest(secret, topic + b"\x00" + payload, hashlib.sha256)


def verify(secret: bytes, topic: bytes, payload: bytes, signature: bytes) -> bool:
    return hmac.compare_digest(sign(secret, topic, payload), signature)


class Verifier:
    """``verify`` for one secret, with the HMAC's key set up once: each check copies the keyed
    state instead of keying a new HMAC (measured 2.5-3.0 -> 1.8-2.0 µs per message), and calls
    OpenSSL's object directly (hmac.HMAC's copy/update/digest are five Python calls)."""

    __slots__ = ("secret", "_keyed")

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self._keyed = _keyed(secret, digestmod="sha256")

    def __call__(self, topic: bytes, payload: bytes, signature: bytes) -> bool:
        mac = self._keyed.copy()
        mac.update(topic + b"\x00" + payload)
        return hmac.compare_digest(mac.digest(), signature)
