"""Running a bot under its own ``user``/``group`` when the supervisor is root.

The worker leaves root before it touches its bot directory (which the supervisor has chowned
to that user). It first makes sure its two ZeroMQ sockets are connected: the supervisor's ipc
sockets are root-only (0600 in a 0700 run_dir), and a worker never needs to reconnect, because
it exits with its supervisor (worker/lifeline.py).
"""

from __future__ import annotations

import logging
import os

import zmq

from .botdir import chown_bot_dir, drop_privileges, resolve_identity
from .lifeline import set_parent_death_signal
from .spec import WorkerSpec

log = logging.getLogger("botvisor.worker")
CONNECT_TIMEOUT_MS = 5000


def become_bot_user(spec: WorkerSpec, commands: zmq.Socket) -> None:
    identity = resolve_identity(spec.bot.user, spec.bot.group)
    if identity is None or os.geteuid() != 0:
        return
    _reconnect_and_wait(commands, spec.commands_endpoint)
    chown_bot_dir(spec.bot_dir, *identity)  # the supervisor did it already; a standalone run has none
    drop_privileges(*identity)
    set_parent_death_signal()  # the kernel clears it when the credentials change
    log.info("running as uid %d gid %d", *identity)


def _reconnect_and_wait(sock: zmq.Socket, endpoint: str) -> None:
    """Connect again under a monitor, so the connection is known to be up before root is gone."""
    # imported here: zmq.utils.monitor pulls in asyncio (~3 MiB in every worker), for a rare path
    from zmq.utils.monitor import recv_monitor_message

    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
    try:
        sock.disconnect(endpoint)
        sock.connect(endpoint)
        while monitor.poll(CONNECT_TIMEOUT_MS):
            if recv_monitor_message(monitor)["event"] == zmq.EVENT_CONNECTED:
                return
        log.warning("%s not connected after %d ms; dropping privileges anyway", endpoint, CONNECT_TIMEOUT_MS)
    finally:
        sock.disable_monitor()
        monitor.close(0)
