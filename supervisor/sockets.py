"""The supervisor's endpoints and its run-dir lock, set up once at start.

Four sockets (docs/protocol.md): events (SUB, workers -> supervisor, signed), tap (XPUB,
supervisor -> taps), control (ROUTER, operators) and commands (ROUTER, supervisor -> workers).
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import zmq

from protocol import curve
from protocol.config import Config
from protocol.topics import WELCOME

#: the largest frame any endpoint accepts; a bigger one is dropped by libzmq before we see it
MAX_FRAME_BYTES = 4 * 1024 * 1024


#: messages the events socket queues before the workers' own queues take the wait
EVENTS_QUEUE = 20_000
#: tries at run_dir's lock, 10 ms apart, before "another supervisor already runs"
LOCK_ATTEMPTS = 5


class AlreadyRunning(RuntimeError):
    pass


class RunDirError(RuntimeError):
    """run_dir cannot be created, locked or written (the message says which and why)."""


def lock_run_dir(run_dir: Path, pid: int) -> int:
    """Create run_dir (0700) and hold its supervisor.lock; returns the lock's fd.

    One supervisor per run_dir: a second one would unlink and steal the ipc sockets.
    """
    try:
        run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        fd = os.open(run_dir / "supervisor.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise RunDirError(f"cannot use run_dir {run_dir}: {exc.strerror or exc}"
                          f"{f' ({exc.filename})' if exc.filename else ''}") from None
    for attempt in range(LOCK_ATTEMPTS):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt + 1 < LOCK_ATTEMPTS:  # a client's probe (lock_is_held) holds it for microseconds
                time.sleep(0.01)
                continue
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise AlreadyRunning(f"another supervisor (pid {holder or '?'}) already runs in {run_dir}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(pid).encode(), 0)
    return fd


def publish_lossy(tap: zmq.Socket, frames: list[bytes]) -> None:
    """Send to the taps that have room, dropping it for a tap whose queue is full.

    libzmq's XPUB drops silently for a full subscriber. The tap socket has XPUB_NODROP set, so
    a send that a full tap would miss is refused instead (EAGAIN): the arbiter counts that in
    ``tap_dropped`` and sends the message again here with NODROP off, so the taps that keep up
    still get it. The hwm is judged per message, not per frame: it is never half sent.
    """
    tap.setsockopt(zmq.XPUB_NODROP, 0)
    try:
        tap.send_multipart(frames, zmq.NOBLOCK)
    finally:
        tap.setsockopt(zmq.XPUB_NODROP, 1)


def bind_sockets(context: zmq.Context, cfg: Config) -> tuple[zmq.Socket, zmq.Socket, zmq.Socket, zmq.Socket]:
    """Bind (events, tap, control, commands); ipc socket files are made private (0600)."""
    events = context.socket(zmq.SUB)
    # Workers queue on their own side (XPUB_NODROP, worker/bus.py) when this queue is full, so
    # nothing is lost by keeping it short; a long one let a flood of forged messages back up in
    # libzmq and leave the supervisor's RSS at each new peak (issue 14; supervisor/memory.py).
    events.setsockopt(zmq.RCVHWM, EVENTS_QUEUE)
    events.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    events.setsockopt(zmq.SUBSCRIBE, b"")
    events.bind(cfg.endpoint("events"))
    tap = context.socket(zmq.XPUB)
    # Lossy on purpose: a tap that stops reading loses its own messages (and sees the gaps in
    # seq), but never blocks the supervisor or starves the other taps. NODROP is only how a
    # full queue is noticed, to count it (publish_lossy): the message then goes out lossy.
    tap.setsockopt(zmq.XPUB_NODROP, 1)
    tap.setsockopt(zmq.SNDHWM, cfg.supervisor.tap_queue)
    tap.setsockopt(zmq.LINGER, 0)
    tap.setsockopt(zmq.XPUB_WELCOME_MSG, WELCOME)  # a tap can tell it is connected
    curve.secure_server(tap, cfg, "tap")
    tap.bind(cfg.endpoint("tap"))
    control = context.socket(zmq.ROUTER)
    control.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    control.setsockopt(zmq.LINGER, 0)
    curve.secure_server(control, cfg, "control")
    control.bind(cfg.endpoint("control"))
    commands = context.socket(zmq.ROUTER)
    commands.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted worker takes over its identity
    commands.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an absent worker is an error, not a silent drop
    commands.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_BYTES)
    commands.setsockopt(zmq.LINGER, 0)
    commands.bind(cfg.endpoint("commands"))
    for endpoint in (cfg.endpoint(r) for r in ("events", "tap", "control", "commands")):
        if endpoint.startswith("ipc://"):
            os.chmod(endpoint[len("ipc://"):], 0o600)
    return events, tap, control, commands
