"""The worker's CPU priority: below the supervisor's, so a busy fleet cannot starve it.

Measured with 50 simulated workers sending flat out on 2 cores: at equal priority the
supervisor got 3 % of a core and relayed 124 events/s (its health checks starve the same
way); with the workers 10 nice steps below, 6,800 to 24,000 events/s (bench/RESULTS.md).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("botvisor.worker")

#: the kernel's autogroup of this process's session (absent without CONFIG_SCHED_AUTOGROUP)
AUTOGROUP = Path("/proc/self/autogroup")
MAX_NICE = 19


def lower_priority(steps: int) -> None:
    """Run ``steps`` nice levels below the process that started us (0: unchanged).

    A worker leads its own session (lifeline.detach_session), and with autogroup scheduling
    (sched_autogroup_enabled=1 and no cpu cgroup, the usual desktop and container case) each
    session is its own scheduling group weighted by the *autogroup's* nice: the process nice
    alone would change nothing against the supervisor's group. Raising a nice value needs no
    privilege, so both always succeed.
    """
    if steps <= 0:
        return
    os.nice(steps)
    if os.getsid(0) != os.getpid():
        # Not a session of our own (setsid was refused: started as a group leader, e.g. by
        # another supervisor): the autogroup is shared with whoever started us, and raising its
        # nice would slow them all down. Measured: it niced a whole shell session to 19.
        return
    try:
        current = int(AUTOGROUP.read_text().split("nice")[1])
        AUTOGROUP.write_text(str(min(MAX_NICE, current + steps)))
    except (OSError, IndexError, ValueError) as exc:  # no autogroup support: the process nice rules
        log.debug("autogroup nice not set: %s", exc)
