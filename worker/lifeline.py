"""Tie a worker's life to its supervisor's, however the supervisor dies.

What the kernel delivers, so that a stopped (SIGSTOP) or hung worker, which runs no code of
its own, still goes:
* The forkserver (the workers' parent) exits as soon as the supervisor does: it watches a
  pipe whose write end only the supervisor holds, because every worker closes its inherited
  copy first thing (``release_inherited_fds``; the resource tracker's pipe too). On its way
  out it SIGKILLs every process group below it (``arm_forkserver``).
* PR_SET_PDEATHSIG: the kernel SIGKILLs a worker when its parent, the single-threaded
  forkserver, dies (the signal follows the parent *thread*, so it is armed only here, where
  the parent has just one).
* PR_SET_CHILD_SUBREAPER on the forkserver: a process a worker started that escaped its
  process group and lost its parent is re-parented to the forkserver, not to pid 1, so it is
  still found and ended.
* A pidfd on the supervisor itself, polled in the worker's main loop: a running worker sees
  the supervisor go at once, whatever happened to the forkserver.
The worker also leads its own session and process group, so ending it can signal everything
it started (``killpg``) without touching anything else.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> bool:
    try:
        # the running process's own symbols include libc's; find_library would run ldconfig
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(option, value, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    return _prctl(PR_SET_PDEATHSIG, int(sig))


def become_subreaper() -> bool:
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_title(title: str) -> None:
    """What ``ps`` and ``top`` show for this process (instead of python3 -c ...).

    SPT_NOENV: by default setproctitle makes room for a long title by moving the environment
    and writing over the area the kernel put it in. Go reads its environment from that area
    (after argv), not from libc's ``environ``: a neonize worker's Go runtime then saw no
    variable at all (GOMAXPROCS, GODEBUG, SSL_CERT_FILE...). The title fits in argv's own area
    (``python -B -c from multiprocess.forkserver import main...`` is long)."""
    os.environ.setdefault("SPT_NOENV", "1")  # read by setproctitle at its first call
    try:
        import setproctitle
    except ImportError:  # a missing optional nicety must not stop a bot
        return
    setproctitle.setproctitle(title)


def detach_session() -> None:
    """Lead a new session and process group (pgid == pid)."""
    try:
        os.setsid()
    except PermissionError:  # already a group leader (standalone from a shell script)
        pass


def release_inherited_fds() -> None:
    """Close the forkserver's "alive" pipe and the resource tracker's pipe a worker inherits.

    Each watches for EOF on its pipe to learn that the supervisor is gone; a worker holding a
    write end (stopped, hung) would keep both alive for ever. A worker uses neither.
    """
    if "multiprocess" not in sys.modules:
        return  # standalone: not started by a forkserver
    from multiprocess import forkserver, resource_tracker

    server = forkserver._forkserver
    fd, server._forkserver_alive_fd = server._forkserver_alive_fd, None
    tracker = resource_tracker._resource_tracker
    tracker_fd, tracker._fd = tracker._fd, None
    for descriptor in (fd, tracker_fd):
        if descriptor is not None:
            try:
                os.close(descriptor)
            except OSError:
                pass


def watch_supervisor(supervisor_pid: int) -> int | None:
    """Arm the worker's side; return a pidfd readable when the supervisor exits (or None).

    Exits at once if the supervisor is already gone (it died between fork and prctl).
    """
    release_inherited_fds()
    set_parent_death_signal()
    if os.getppid() == 1:
        os._exit(1)
    if not supervisor_pid:
        return None
    try:
        return os.pidfd_open(supervisor_pid)
    except ProcessLookupError:
        os._exit(1)
    except (OSError, AttributeError):
        return None


def kill_group_and_descendants(pids: list[int]) -> None:
    """SIGKILL each pid's process group (when it leads one) and the pid itself."""
    for pid in pids:
        try:
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def arm_forkserver() -> None:
    """Run in the forkserver (imported by its preload): subreaper, title, and no survivors.

    When the supervisor dies the forkserver's loop ends (SystemExit) and the interpreter's exit
    runs the handler below: everything under the forkserver is SIGKILLed by process group, the
    workers (stopped ones too) and whatever they started.
    """
    import atexit
    import warnings

    import psutil

    become_subreaper()
    set_title("botvisor forkserver")
    # orphans re-parented here are reaped by the forkserver's SIGCHLD loop, which warns about
    # each pid it did not fork; expected now
    warnings.filterwarnings("ignore", message="forkserver: waitpid returned unexpected pid")
    me = os.getpid()

    def end_everything_below() -> None:
        if os.getpid() != me:  # a forked worker inherits the handler; only the server runs it
            return
        try:
            below = [p.pid for p in psutil.Process(me).children(recursive=True)]
        except psutil.Error:
            return
        kill_group_and_descendants(below)

    atexit.register(end_everything_below)


def in_forkserver() -> bool:
    """True while the forkserver's main is importing its preload (``python -c 'from
    multiprocess.forkserver import main; main(...)'``)."""
    return sys.argv[:1] == ["-c"] and "multiprocess.forkserver" in sys.modules
