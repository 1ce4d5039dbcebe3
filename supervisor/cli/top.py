"""A live full-screen table of the fleet, sorted by health (worst first); q quits.

Refreshed from the tap stream (heartbeats, events, state changes as they happen) and from
`status` once a second (pid, uptime, RSS, CPU). Keeps running across a supervisor restart,
showing that the supervisor does not answer meanwhile. Exits 3 when no supervisor answers at
start.
"""

from __future__ import annotations

import argparse
import os
import sys
import termios
import time
import tty
from contextlib import contextmanager
from typing import Any, Iterator

import zmq
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from protocol import Event, Heartbeat, Hello, ProtocolError, StateChange, decode
from protocol.client import ControlClient, ControlError, NotRunning
from protocol.topics import WELCOME

from ..container import iso
from . import table
from .common import EXIT_NOT_RUNNING, EXIT_OK, add_config_argument, fail, load_for_client
from .tap import connect

#: seconds between two status requests, and between two redraws at most
STATUS_EVERY = 1.0
REDRAW_EVERY = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--fleet", action="store_true",
                        help="[cluster]: every shard's bots ([cluster] peer_control / peer_tap), with their shard")
    parser.add_argument("--interval", type=float, default=STATUS_EVERY, metavar="S",
                        help=f"seconds between status refreshes (default {STATUS_EVERY:g})")


class FleetView:
    """The rows on screen: the last status, patched by the tap messages seen since."""

    def __init__(self) -> None:
        self.bots: dict[str, dict[str, Any]] = {}
        self.server = "?"
        self.pid: int | None = None
        self.problem: str | None = None
        self.messages = 0

    def on_status(self, result: dict[str, Any]) -> None:
        self.server, self.pid, self.problem = result["server"], result["pid"], result.get("problem")
        self.bots = {b["bot_id"]: b for b in result["bots"]}

    def on_message(self, message: Any) -> None:
        self.messages += 1
        bot = self.bots.get(message.bot)
        if bot is None:
            return  # a bot status does not know yet: the next refresh brings it
        match message:
            case Hello():
                bot["pid"] = message.pid
            case Heartbeat():
                bot["last_heartbeat"] = iso(message.ts)
                bot["bot_status"] = message.bot_status.value
                bot["connection_attempts"] = message.connection_attempts
                bot["is_healthy"] = bot["container_state"] == "running"
            case StateChange():
                bot["container_state"] = message.state.value
                bot["reason"] = message.reason
                bot["restarts"] = message.restarts
                bot["is_healthy"] = False if message.state.value != "running" else bot["is_healthy"]
            case Event():
                bot["events_total"] += 1

    def render(self, height: int | None = None) -> Group:
        rows = sorted(self.bots.values(), key=lambda b: (table.health_rank(b), b["bot_id"]))
        # the worst ones that fit on screen (header, table head and a "more" line take 6)
        shown = rows if height is None or len(rows) <= height - 6 else rows[:max(1, height - 7)]
        counts: dict[str, int] = {}
        for b in rows:
            counts[b["container_state"]] = counts.get(b["container_state"], 0) + 1
        summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        bad = sum(table.is_bad(b) for b in rows)
        head = Text(f"botvisor top — {self.server} (pid {self.pid}) — {len(rows)} bot(s): {summary or 'none'}"
                    f" — {bad} need attention — {time.strftime('%H:%M:%S')} — q quits")
        if bad:
            head.stylize("bold red", head.plain.index(f"{bad} need"), head.plain.index(" need") + 15)
        parts: list[Any] = [head]
        if self.problem:
            parts.append(Text(self.problem, style="bold yellow"))
        parts.append(table.build(shown))
        if len(shown) < len(rows):
            parts.append(Text(f"… and {len(rows) - len(shown)} more (healthier) bot(s)", style="dim"))
        return Group(*parts)


@contextmanager
def keys(fd: int) -> Iterator[bool]:
    """Unbuffered key presses from ``fd`` when it is a terminal (restored on exit)."""
    if not os.isatty(fd):
        yield False
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def execute(args: argparse.Namespace) -> int:
    config = load_for_client(args)
    client: Any = ControlClient.for_config(config, timeout=2.0)
    taps = [config.endpoint("tap")]
    if args.fleet:  # every shard: the merged status, every shard's tap
        from protocol.fleet import FleetClient, endpoints

        client, taps = FleetClient(config), [ep for _k, ep in endpoints(config, "tap")]
    view = FleetView()
    try:
        view.on_status(client.call("status"))
    except NotRunning as exc:
        client.close()
        return fail(f"{exc} (config {config.path})", EXIT_NOT_RUNNING)
    context = zmq.Context()
    sock = connect(context, taps, [""], config)
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    stdin = sys.stdin.fileno()
    try:
        console = Console()
        with keys(stdin) as interactive, Live(view.render(console.height), console=console, screen=True,
                                              auto_refresh=False) as live:
            if interactive:
                poller.register(stdin, zmq.POLLIN)
            next_status = time.monotonic() + args.interval
            next_draw = 0.0
            while True:
                now = time.monotonic()
                ready = dict(poller.poll(int(max(0.0, min(next_status, next_draw) - now) * 1000) + 1))
                if stdin in ready and _quit(stdin):
                    break
                if sock in ready:
                    _drain(sock, view)
                if time.monotonic() >= next_status:
                    _refresh(client, view)
                    next_status = time.monotonic() + args.interval
                if time.monotonic() >= next_draw:
                    live.update(view.render(console.height), refresh=True)
                    next_draw = time.monotonic() + REDRAW_EVERY
    except KeyboardInterrupt:
        pass
    finally:
        client.close()
        sock.close(0)
        context.term()
    return EXIT_OK


def _quit(fd: int) -> bool:
    data = os.read(fd, 64)
    return not data or any(ch in data for ch in b"qQ\x03")


def _drain(sock: zmq.Socket, view: FleetView) -> None:
    for _ in range(5000):  # bounded, so keys and redraws keep their turn
        try:
            frames = sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return
        if len(frames) != 2 or frames == [WELCOME]:
            continue
        try:
            view.on_message(decode(frames[1]))
        except ProtocolError:
            continue


def _refresh(client: ControlClient, view: FleetView) -> None:
    try:
        view.on_status(client.call("status", timeout=1.0))
    except NotRunning:
        view.problem = "the supervisor does not answer (restarting?); waiting for it"
    except ControlError as exc:
        view.problem = f"status failed: {exc}"
