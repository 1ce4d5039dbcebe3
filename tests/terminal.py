"""Driving a botvisor command as a terminal user would: on a pseudo-terminal, or on a pipe read
line by line. Every wait is bounded; every process is killed and reaped at close."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from typing import Callable

from .harness import REPO


def botvisor(*args: str) -> list[str]:
    return [sys.executable, "-m", "supervisor.cli", *args]


class Terminal:
    """A process whose stdin/stdout/stderr are a pty of ``rows`` x ``cols``."""

    def __init__(self, argv: list[str], rows: int = 50, cols: int = 200) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(cols), "LINES": str(rows)}
        env.pop("NO_COLOR", None)
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env,
                                     start_new_session=True)
        os.close(slave)
        self.output = b""

    def read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: the other side closed
            return False
        self.output += chunk
        return bool(chunk)

    def wait_for(self, condition: Callable[[str], bool], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while not condition(self.text):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} on the terminal within {timeout} s; got:\n{self.text[-3000:]}")
            if not self.read(min(left, 0.2)) and self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode} before {what}:\n{self.text[-3000:]}")
        return self.text

    @property
    def text(self) -> str:
        return self.output.decode(errors="replace")

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def wait_exit(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read(0.1)
        return self.proc.wait(max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        os.close(self.master)


class Lines:
    """A process whose stdout is a pipe, read line by line as it prints."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self.lines: list[str] = []
        self._partial = b""

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if ready:
            chunk = self.proc.stdout.read() or b""
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            self.lines += [line.decode() for line in complete]

    def wait_for(self, condition: Callable[[str], bool], timeout: float, what: str, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        seen = start
        while True:
            for line in self.lines[seen:]:
                if condition(line):
                    return line
            seen = len(self.lines)
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None and not select.select([self.proc.stdout], [], [], 0)[0]:
                raise AssertionError(f"no {what} within {timeout} s (exit {self.proc.poll()}); last lines:\n"
                                     + "\n".join(self.lines[-10:]))
            self.read(min(left, 0.2))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.proc.stdout.close()
        self.proc.stderr.close()
