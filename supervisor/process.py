"""Creating and signalling worker processes; the only module that touches multiprocess.

Workers come from a forkserver: a clean, single-threaded process that forks each worker. The
supervisor itself is never forked (it holds ZeroMQ contexts and threads), and the server
preloads the worker's pure-Python modules so a fork is ready in milliseconds. Never neonize:
importing it starts the Go runtime, which does not survive fork. Where forkserver does not
exist, spawn.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any, Iterator

import multiprocess
import psutil

from worker.spec import WorkerSpec

from . import cgroups

#: imported once in the forkserver, shared copy-on-write by every worker
PRELOAD = ["worker.main", "worker.backends.simulated", "zmq", "msgpack"]
#: neonize's pure dependencies (no threads, no Go), preloaded only when the configuration has a
#: neonize bot. Measured with 4 neonize + 4 simulated bots: a neonize worker starts ~0.2 s sooner
#: and holds ~10 MiB less private memory (USS 37.6 -> 27.3 MiB). The pages are shared, but they
#: count in every worker's RSS: a simulated worker's RSS went from 22.6 to 36.4 MiB with them.
NEONIZE_PRELOAD = ["google.protobuf.message", "segno", "phonenumbers", "PIL.Image", "magic", "linkpreview",
                   "requests", "worker.neonize_preload"]

_context: Any = None


def worker_context(neonize: bool = False) -> Any:
    """The start method's context; the forkserver's preload is fixed by the first call."""
    global _context
    if _context is None:
        methods = multiprocess.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        context = multiprocess.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(PRELOAD + (NEONIZE_PRELOAD if neonize else []))
        _context = context
    return _context


def stop_forkserver() -> None:
    """End the forkserver now instead of when the supervisor's process exits."""
    from multiprocess import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if stop is not None:
        try:
            stop()
        except (OSError, ChildProcessError):
            pass


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep a worker from re-running the supervisor's ``__main__`` (e.g. the ``botvisor`` script).

    multiprocess "fixes up" a forkserver/spawn child by importing the parent's main module from
    its path. A worker needs none of it (its code is worker.main, preloaded), and importing the
    CLI in each of hundreds of workers would cost start-up time and memory.
    """
    main = sys.modules.get("__main__")
    saved = main.__dict__.pop("__file__", None) if main is not None else None
    try:
        yield
    finally:
        if saved is not None:
            main.__file__ = saved  # type: ignore[union-attr]


class WorkerProcess:
    """One worker process: its pid, its exit sentinel and its process group."""

    def __init__(self, spec: WorkerSpec) -> None:
        from worker.main import worker_entry

        self.spec = spec
        self._process = worker_context().Process(target=worker_entry, args=(spec,), name=f"botvisor-{spec.bot_id}",
                                                 daemon=False)
        self._psutil: psutil.Process | None = None
        self.pid = 0
        self.sentinel = -1

    def start(self) -> int:
        with _main_module_hidden():
            self._process.start()
        self.pid = self._process.pid
        cgroups.place(self.pid)  # into the workers' low-weight group, when there is one
        self.sentinel = self._process.sentinel
        return self.pid

    @property
    def exitcode(self) -> int | None:
        """None while it runs; the exit code, or minus the signal number that killed it."""
        return self._process.exitcode

    def signal_tree(self, sig: int) -> None:
        """Signal the worker's process group (it leads one), and any child that left it."""
        if self.exitcode is not None:
            return
        children: list[psutil.Process] = []
        if sig == signal.SIGKILL:
            try:
                children = psutil.Process(self.pid).children(recursive=True)
            except psutil.Error:
                pass
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:  # not a group leader yet: signal the process alone
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        except PermissionError:
            os.kill(self.pid, sig)
        for child in children:
            try:
                child.send_signal(sig)
            except psutil.Error:
                pass

    def resources(self) -> tuple[int, float]:
        """(RSS bytes, CPU percent since the last call)."""
        try:
            if self._psutil is None:
                self._psutil = psutil.Process(self.pid)
            with self._psutil.oneshot():
                return self._psutil.memory_info().rss, self._psutil.cpu_percent(None)
        except psutil.Error:
            return 0, 0.0

    def close(self) -> int | None:
        """Collect the exit code and release the sentinel; the process must have ended."""
        code = self._process.exitcode
        try:
            self._process.close()
        except ValueError:
            pass
        return code
