"""Worker exit codes: the contract between a worker and the restart policy.

This module is the one place they are defined; docs/supervision.md restates them.
Death by a signal (a negative ``exitcode`` from multiprocess) is a crash, like CRASH.
"""

from __future__ import annotations

#: the worker was asked to stop (SIGTERM, an operator, a reload) and did
OK = 0
#: something broke; the supervisor restarts the worker under the restart policy
#: (70 is EX_SOFTWARE; any code other than OK and FATAL counts the same)
CRASH = 70
#: fatal for this bot (logged out, banned, bad credentials, bad config, directory locked):
#: the container goes to ``failed`` at once and is never restarted automatically
FATAL = 78  # EX_CONFIG

#: `botvisor run` exits with FATAL when its configuration file is invalid
CONFIG_ERROR = FATAL


def describe(exitcode: int | None) -> str:
    """A human reading of a multiprocess exit code: ``exit 0``, ``exit 78 (fatal)``, ``SIGKILL``."""
    import signal

    if exitcode is None:
        return "running"
    if exitcode < 0:
        try:
            return signal.Signals(-exitcode).name
        except ValueError:
            return f"signal {-exitcode}"
    names = {OK: "ok", CRASH: "crash", FATAL: "fatal"}
    name = names.get(exitcode)
    return f"exit {exitcode} ({name})" if name else f"exit {exitcode}"
