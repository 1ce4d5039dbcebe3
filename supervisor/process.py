"""Creating and signalling worker processes; the only module that touches multiprocess.

Workers come from a forkserver: a clean, single-threaded process that forks each worker. The
supervisor itself is never forked (it holds ZeroMQ contexts and threads), and the server
preloads the worker's pure-Python modules so a fork is ready in milliseconds. Never neonize:
importing it starts the Go runtime, which does not survive fork. Where forkserver does not
exist, spawn.
"""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import sys
import threading
import time
from typing import Any, Iterator

import multiprocess
import psutil

from worker import go_runtime
from worker.spec import WorkerSpec

from . import cgroups

#: imported once in the forkserver, shared copy-on-write by every worker
#: worker.forkserver_init first: it arms the forkserver itself (worker/lifeline.py); FREEZE last
PRELOAD = ["worker.forkserver_init", "worker.main", "worker.backends.simulated", "zmq", "msgpack"]
#: neonize's pure dependencies (no threads, no Go), preloaded only when the configuration has a
#: neonize bot. Measured with 4 neonize + 4 simulated bots: a neonize worker starts ~0.2 s sooner
#: and holds ~10 MiB less private memory (USS 37.6 -> 27.3 MiB). The pages are shared, but they
#: count in every worker's RSS: a simulated worker's RSS went from 22.6 to 36.4 MiB with them.
NEONIZE_PRELOAD = ["google.protobuf.message", "segno", "phonenumbers", "PIL.Image", "magic", "linkpreview",
                   "requests", "worker.neonize_preload"]

#: the bot-app framework (never an app itself: apps are imported by their worker after the fork),
#: preloaded only when the configuration has a bot with an app. Shared copy-on-write, its pages
#: count once in every worker's RSS instead of privately in each app's (docs/apps.md, bench/apps.py).
APP_PRELOAD = ["asyncio", "concurrent.futures.thread", "ctypes", "worker.app.host", "worker.app.slot"]

#: imported after every other preload: it takes what they built out of the workers' collections
FREEZE = "worker.forkserver_freeze"

_context: Any = None
#: pids of the workers started here and not yet closed: whatever else runs under the forkserver
#: is an orphan of a dead worker (``reap_orphans``)
_live: set[int] = set()
_live_lock = threading.Lock()


def worker_context(neonize: bool = False, apps: bool = False) -> Any:
    """The start method's context; the forkserver's preload is fixed by the first call."""
    global _context
    if _context is None:
        go_runtime.configure()  # inherited by the forkserver, so by every neonize worker's Go runtime
        methods = multiprocess.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        context = multiprocess.get_context(method)
        if method == "forkserver":
            context.set_forkserver_preload(PRELOAD + (NEONIZE_PRELOAD if neonize else [])
                                           + (APP_PRELOAD if apps else []) + [FREEZE])
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


def _end_group(pgid: int) -> None:
    """SIGKILL what is left of a dead worker's process group (it led one, pgid == its pid).

    The kernel keeps a pid reserved while a group of that id has members, so the group
    cannot be a stranger's; an empty group is simply gone (ProcessLookupError).
    """
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def forkserver_pid() -> int | None:
    from multiprocess import forkserver

    return getattr(forkserver._forkserver, "_forkserver_pid", None)


def reap_orphans() -> list[int]:
    """SIGKILL every process under the forkserver that is not a live worker; their pids.

    These are processes dead workers started that escaped their group (setsid) and were
    re-parented to the forkserver; the forkserver reaps them once they die. Callers hold
    ``_live_lock``, so a worker being forked is already in ``_live``.
    """
    pid = forkserver_pid()
    if pid is None:
        return []
    try:
        orphans = [p for p in psutil.Process(pid).children() if p.pid not in _live]
    except psutil.Error:
        return []
    for orphan in orphans:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(orphan.pid) == orphan.pid:
                os.killpg(orphan.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            orphan.kill()
    return [p.pid for p in orphans]


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


def _mp_children() -> set[Any]:
    """multiprocess's set of the processes it polls at every start (and joins at exit)."""
    from multiprocess import process as mp_process

    return mp_process._children  # type: ignore[attr-defined,no-any-return]


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ResourceSampler:
    """A process's RSS and CPU share from one read of /proc/<pid>/stat. psutil took two reads
    (stat and statm) for the same, and a `status` of 200 bots made 400 of them (~25 ms). The
    file is opened once and read again with pread: 200 reads took 4.2 ms opened each time,
    0.96 ms kept open (bench/ISSUE18-notes.md §10). A kept fd also names the process itself, not
    its pid: once the process is reaped, reading it fails instead of reading a reused pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        #: (CPU seconds, monotonic time) at the last sample
        self._mark: tuple[float, float] | None = None
        self._fd: int | None = None

    def open(self) -> None:
        """Keep the file open from now on (at a spawn: a fleet's first status then opens none),
        within the fd budget (kept_fd_budget); otherwise each sample opens and closes it."""
        global _kept
        if self._fd is not None or _kept >= kept_fd_budget():
            return
        try:
            self._fd = os.open(f"/proc/{self.pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOENT, errno.ESRCH):
                raise
            return
        _kept += 1

    def _read(self) -> bytes:
        if self._fd is None:
            self.open()
        if self._fd is None:
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                return f.read()
        return os.pread(self._fd, 4096, 0)

    def sample(self) -> tuple[int, float]:
        """(RSS bytes, CPU percent since the last sample; 0.0 the first time); (0, 0.0) once gone."""
        try:
            fields = self._read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            self.close()
            return 0, 0.0
        # after the name, fields[0] is proc(5)'s field 3 (state): field n is fields[n - 3]
        cpu = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime
        rss = int(fields[21]) * _PAGE_SIZE
        now = time.monotonic()
        last, self._mark = self._mark, (cpu, now)
        if last is None or now <= last[1]:
            return rss, 0.0
        return rss, round(100.0 * (cpu - last[0]) / (now - last[1]), 1)

    def close(self) -> None:
        global _kept
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            _kept -= 1


#: kept /proc files take at most 1/KEEP_FD_SHARE of the fd limit: the rest is for what must not
#: fail for want of an fd (sentinels, sockets, control clients)
KEEP_FD_SHARE = 4
_kept = 0


def kept_fd_budget() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 30 if soft == resource.RLIM_INFINITY else soft // KEEP_FD_SHARE


def raise_fd_limit() -> int:
    """The soft fd limit up to the hard one (what the supervisor may use: a sentinel per worker,
    sockets, a kept /proc file per worker); the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class WorkerProcess:
    """One worker process: its pid, its exit sentinel and its process group."""

    def __init__(self, spec: WorkerSpec) -> None:
        from worker.main import worker_entry

        self.spec = spec
        self._process = worker_context().Process(target=worker_entry, args=(spec,), name=f"botvisor-{spec.bot_id}",
                                                 daemon=False)
        self._sampler: ResourceSampler | None = None
        self.pid = 0
        self.sentinel = -1

    def start(self) -> int:
        with _live_lock, _main_module_hidden():
            self._process.start()
            _live.add(self._process.pid)
            # Process.start() first polls every child it has started and not seen end (its
            # _children), each poll a selector of its own: O(fleet) per start, O(fleet^2) to
            # start one. 1,000 starts took 17 s, most of it there (py-spy). The supervisor
            # watches its workers' sentinels itself; multiprocess need not track them.
            _mp_children().discard(self._process)
        self.pid = self._process.pid
        self._sampler = ResourceSampler(self.pid)
        self._sampler.open()
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
        """(RSS bytes, CPU percent since the last call; 0.0 the first time; nothing before start)."""
        return self._sampler.sample() if self._sampler is not None else (0, 0.0)

    def close(self) -> int | None:
        """Collect the exit code and release the sentinel; the process must have ended.

        Whatever the worker started ends with it, however it ended: its process group is
        SIGKILLed, and so is anything of a dead worker that left the group (re-parented to the
        forkserver, which is a subreaper).
        """
        code = self._process.exitcode
        if self._sampler is not None:
            self._sampler.close()
        if code is not None:
            with _live_lock:
                _live.discard(self.pid)
                _end_group(self.pid)
                reap_orphans()
        try:
            self._process.close()
        except ValueError:
            pass
        return code
