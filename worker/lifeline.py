"""Tie a worker's life to its supervisor's, however the supervisor dies.

Two independent mechanisms, because either alone has a gap:
* PR_SET_PDEATHSIG: the kernel SIGKILLs the worker when its parent dies. The parent is the
  forkserver, which itself exits as soon as the supervisor does.
* A pidfd on the supervisor itself, polled in the worker's main loop: readable the moment
  the supervisor exits, whatever happened to the forkserver.
The worker also leads its own session and process group, so stopping it can signal
everything it started (``killpg``) without touching anything else.
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    try:
        # the running process's own symbols include libc's; find_library would run ldconfig
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def detach_session() -> None:
    """Lead a new session and process group (pgid == pid)."""
    try:
        os.setsid()
    except PermissionError:  # already a group leader (standalone from a shell script)
        pass


def watch_supervisor(supervisor_pid: int) -> int | None:
    """Arm both mechanisms; return a pidfd readable when the supervisor exits (or None).

    Exits at once if the supervisor is already gone (it died between fork and prctl).
    """
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
