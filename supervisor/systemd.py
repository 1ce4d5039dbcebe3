"""sd_notify without libsystemd: one datagram per state change to $NOTIFY_SOCKET.

READY=1 after every bot's first start was attempted, STATUS= a one-line fleet summary,
RELOADING=1 / READY=1 around a reload, STOPPING=1 on shutdown, WATCHDOG=1 at half of
$WATCHDOG_USEC. The pings are sent by the supervisor's own loop (``watchdog_due`` is called
once per loop pass), never by a thread, so a wedged loop stops them and systemd restarts the
service. The variables are removed from the environment once read, so workers (which
inherit it) can never speak for the supervisor.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("botvisor.systemd")

#: seconds; when set, SIGUSR1 makes the supervisor's loop sleep this long (tests the watchdog)
WEDGE_ENV = "BOTVISOR_DEBUG_WEDGE_SECONDS"


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._socket: socket.socket | None = None
        self._next_watchdog = 0.0
        self._last_status: str | None = None
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls, unset: bool = True) -> Notifier:
        env = os.environ
        address = env.get("NOTIFY_SOCKET")
        usec = env.get("WATCHDOG_USEC")
        watchdog_pid = env.get("WATCHDOG_PID")
        if unset:  # like sd_notify(unset_environment=1): children must not inherit them
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(name, None)
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            usec = None  # the watchdog is meant for another process
        try:
            watchdog = int(usec) if usec else None
        except ValueError:
            log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
            watchdog = None
        return cls(address, watchdog if watchdog and watchdog > 0 else None)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *fields: str) -> None:
        if self._socket is None or not self.address:
            return
        # '@name' is an abstract socket: a leading NUL byte instead of the '@'
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._socket.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)

    def ready(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        # systemd >= 253 wants the time of the reload request with RELOADING=1
        monotonic_usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
        """Send STATUS= when it changed (state changes of a big fleet come in bursts)."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def watchdog_due(self, now: float) -> float | None:
        """Send WATCHDOG=1 if it is time; return when the next one is due (None: no watchdog)."""
        if self.watchdog_interval is None or self._socket is None:
            return None
        if now >= self._next_watchdog:
            self.send("WATCHDOG=1")
            self._next_watchdog = now + self.watchdog_interval
        return self._next_watchdog

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def debug_wedge_seconds() -> float | None:
    """The test hook's duration from $BOTVISOR_DEBUG_WEDGE_SECONDS (None: the hook is off)."""
    raw = os.environ.get(WEDGE_ENV)
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a number", WEDGE_ENV, raw)
        return None
    return seconds if seconds > 0 else None
