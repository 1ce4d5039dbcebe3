"""Process hygiene for the bench: every process it starts or sees is killed by pid at the end.

``Reaper`` remembers each Popen it started and every pid the bench ever saw under them
(workers, forkservers, peers' children), and ``kill_all`` SIGKILLs them all, also on Ctrl-C,
SIGTERM or an exception. Nothing is ever killed by name. Children are read from
``/proc/PID/task/TID/children``: one small file per poll, cheap enough to poll every 2 ms.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable


class BenchTimeout(RuntimeError):
    """A bounded wait ran out."""


def children(pid: int) -> set[int]:
    """Direct children of ``pid`` (all of its threads), zombies included; empty when it is gone."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                found.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def state(pid: int) -> str | None:
    """The /proc state letter (R, S, T, Z, ...) or None when the pid does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    return state(pid) not in (None, "Z", "X")


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.002) -> float:
    """Poll ``condition`` until true; return the monotonic time it held. Bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchTimeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


class Reaper:
    def __init__(self) -> None:
        self.popens: list[subprocess.Popen[bytes]] = []
        self.pids: set[int] = set()

    def popen(self, argv: list[str], *, log: Path | None = None, **kwargs: object) -> subprocess.Popen[bytes]:
        out = open(log, "ab") if log is not None else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    **kwargs)  # type: ignore[call-overload]
        finally:
            if log is not None:
                out.close()  # type: ignore[union-attr]
        self.popens.append(proc)
        self.pids.add(proc.pid)
        return proc

    def saw(self, pids: Iterable[int]) -> None:
        self.pids.update(pids)

    def descendants(self, pid: int) -> set[int]:
        found, todo = set(), [pid]
        while todo:
            for child in children(todo.pop()):
                if child not in found:
                    found.add(child)
                    todo.append(child)
        return found

    def kill_all(self) -> list[int]:
        """SIGKILL every pid seen (descendants first collected); reap our children. Returns survivors."""
        for pid in list(self.pids):
            self.pids.update(self.descendants(pid))
        for pid in self.pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGCONT)  # a SIGSTOPped process still dies of SIGKILL, but be sure
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        for proc in self.popens:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in self.pids):
            time.sleep(0.02)
        survivors = sorted(p for p in self.pids if alive(p))
        self.popens.clear()
        self.pids.clear()
        return survivors


def install_signal_handlers() -> None:
    """SIGINT, SIGTERM and SIGHUP end the bench as Ctrl-C does, so its finally blocks clean up.

    SIGINT is set explicitly: a shell starts a background job with SIGINT ignored.
    """

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
