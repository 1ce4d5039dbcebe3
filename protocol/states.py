"""Container states and bot statuses: the names on the wire and in `botvisor status`.

A leaf module (stdlib only), like supervisord's states.py. The transition table says which
edges exist; ``supervisor.container`` is the only place that walks them.
"""

from __future__ import annotations

from enum import StrEnum


class ContainerState(StrEnum):
    #: the worker process was started and has not said hello yet
    INITIALIZING = "initializing"
    #: the worker said hello and is heartbeating
    RUNNING = "running"
    #: the worker was sent SIGTERM and has not exited yet
    STOPPING = "stopping"
    #: no worker, and none will be started until an operator asks
    STOPPED = "stopped"
    #: the worker exited; it is restarted at ``next_restart_at``
    BACKOFF = "backoff"
    #: given up: a fatal exit or too many restarts; ``reason`` says which
    FAILED = "failed"


class BotStatus(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"
    LOADING = "loading"


S = ContainerState

#: every edge a container may take; anything else is a bug and raises
#: (a worker that could not even be started counts as one that ended at once: the edges from
#: stopped, backoff and failed to backoff and failed)
TRANSITIONS: dict[ContainerState, frozenset[ContainerState]] = {
    S.STOPPED: frozenset({S.INITIALIZING, S.BACKOFF, S.FAILED}),
    S.INITIALIZING: frozenset({S.RUNNING, S.STOPPING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.STOPPING: frozenset({S.STOPPED, S.BACKOFF, S.FAILED}),
    S.BACKOFF: frozenset({S.INITIALIZING, S.BACKOFF, S.FAILED, S.STOPPED}),
    S.FAILED: frozenset({S.INITIALIZING, S.BACKOFF, S.STOPPED}),
}

#: states in which a worker process exists
PROCESS_STATES = frozenset({S.INITIALIZING, S.RUNNING, S.STOPPING})
