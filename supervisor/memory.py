"""Give memory freed after a burst back to the system (glibc's malloc_trim).

What grows under chaos is not a Python object (tracemalloc sees the Python heap flat) but the
high-water mark of native queues: a flood on the events endpoint backs messages up in libzmq
(at most the events socket's RCVHWM), and once they are read glibc keeps the freed pages, so
RSS climbs to each new peak and stays there. ``trim`` hands them back; the supervisor calls it
every TRIM_EVERY_S seconds, which costs about a millisecond.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("botvisor.supervisor")

#: seconds between two trims
TRIM_EVERY_S = 10.0

_malloc_trim = None
try:  # glibc only; elsewhere (musl, macOS) there is nothing to trim with and trim() does nothing
    _malloc_trim = ctypes.CDLL(None).malloc_trim
    _malloc_trim.argtypes = [ctypes.c_size_t]
    _malloc_trim.restype = ctypes.c_int
except (OSError, AttributeError):
    pass


def trim() -> bool:
    """Return free heap pages to the system; True when some were."""
    return bool(_malloc_trim(0)) if _malloc_trim is not None else False
