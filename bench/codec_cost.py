"""What one event costs in the protocol code, per call, in this process (timeit, best of 5).

It splits the supervisor's per-event CPU into its parts, and puts the bare msgpack
operations beside them, so a profile's "schema" share has a number in microseconds.
"""

from __future__ import annotations

import time
import timeit
from typing import Any, Callable

import msgpack


def _best(fn: Callable[[], Any], number: int = 2000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def measure() -> dict[str, float]:
    """Microseconds per call of each step an event goes through."""
    from protocol import Event, EventType, MessageUpsert, decode, encode
    from protocol.schema import to_mapping
    from protocol.signing import new_secret, sign, verify

    data = MessageUpsert(id="SIM0000000001", chat="15550000000@s.whatsapp.net", sender="15550000000@s.whatsapp.net",
                         timestamp=time.time(), from_me=False, text="simulated message 1", push_name="Simulated")
    event = Event("bench", "b1", 1234, 7, time.time(), EventType.MESSAGE_UPSERT, data)
    topic, payload = encode(event)
    secret = new_secret()
    signature = sign(secret, topic, payload)
    body = msgpack.unpackb(payload, raw=False)
    steps = {
        "worker: encode (to_mapping + packb)": lambda: encode(event),
        "worker: sign (HMAC)": lambda: sign(secret, topic, payload),
        "supervisor: verify (HMAC)": lambda: verify(secret, topic, payload, signature),
        "supervisor: decode (unpackb + schema)": lambda: decode(payload),
        "supervisor: to_mapping of the data (event history)": lambda: to_mapping(data),
        "bare: msgpack.unpackb": lambda: msgpack.unpackb(payload, raw=False),
        "bare: msgpack.packb": lambda: msgpack.packb(body, use_bin_type=True),
    }
    return {name: _best(fn) * 1e6 for name, fn in steps.items()}
