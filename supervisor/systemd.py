"""sd_notify without libsystemd: one datagram per state change to $NOTIFY_SOCKET.

READY=1 after every bot's first start was attempted, STATUS= a one-line fleet summary,
RELOADING=1 / READY=1 around a reload, STOPPING=1 on shutdown, WATCHDOG=1 at half of
$WATCHDOG_USEC, sent from the supervisor's own loop, so a wedged loop stops the pings and
systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("botvisor.systemd")


class Notifier:
    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._socket: socket.socket | None = None
        self._next_watchdog = 0.0
        if address:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @classmethod
    def from_env(cls) -> Notifier:
        address = os.environ.get("NOTIFY_SOCKET")
        usec = os.environ.get("WATCHDOG_USEC")
        watchdog_pid = os.environ.get("WATCHDOG_PID")
        if watchdog_pid and watchdog_pid != str(os.getpid()):
            usec = None  # the watchdog is meant for another process
        try:
            watchdog = int(usec) if usec else None
        except ValueError:
            watchdog = None
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def send(self, *fields: str) -> None:
        if self._socket is None or not self.address:
            return
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._socket.sendto("\n".join(fields).encode(), target)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        monotonic_usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def status(self, text: str) -> None:
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
