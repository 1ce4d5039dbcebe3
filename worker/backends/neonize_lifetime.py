"""Owning a neonize client's lifetime: no garbage collection ever stops it.

neonize 0.5.2 registers ``weakref.finalize(client, NewClient._release_ffi, ...)``, which calls
Go's ``Stop``; ``Stop`` waits for an in-flight dial to end (up to 60 s). A finalizer runs on
whatever thread drops the last reference or triggers a collection, so a collected client can
freeze the worker's loop for a minute, and the supervisor then kills a healthy bot as hung.
So the worker owns the client: the finalizer is detached at creation, a reference is held for
the life of the process, and ``release`` stops the client on a daemon thread of its own.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

C = TypeVar("C")

#: every client this process created, alive until the process ends (it ends with os._exit)
_OWNED: list[Any] = []


def own(client: C) -> C:
    finalizer = getattr(client, "_stop_finalizer", None)
    if finalizer is not None:
        finalizer.detach()
    _OWNED.append(client)
    return client


def release(client: Any) -> threading.Thread:
    """Stop ``client`` without waiting for Go; the reference stays in _OWNED."""
    thread = threading.Thread(target=client.stop, name="neonize-stop", daemon=True)
    thread.start()
    return thread
