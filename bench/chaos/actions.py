"""The seeded chaos driver: every action is drawn from one random.Random(seed)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import msgpack
import zmq

from protocol import BotStatus, Heartbeat, encode
from protocol.control import Request, decode_reply, encode_request

from .fleet import FATAL_BOT, NICE, REPO, SERVER, TIMEOUT, Fleet
from .observe import FORGED_PID

#: a busy bot: spins at the workers' own priority. Like a worker it leads its own session and
#: lowers that session's autogroup by bots.nice (worker/priority.py): with autogroup scheduling
#: a plain os.nice(10) in the driver's session weighed as the driver's group, nice 0, and with
#: two of them spinning a worker's start (hello to first heartbeat) took 2-3 times as long
HOG = f"from worker.priority import lower_priority; lower_priority({NICE})\nwhile 1: pass"
#: bots the reloads may have added at once (the soak's fleet stays at its size plus at most this)
MAX_ADDED = 4


@dataclass
class Record:
    """What the driver did, for the checks."""

    done: Counter[str] = field(default_factory=Counter)
    #: pids we SIGSTOPped (a stale verdict on them is right)
    stopped: set[int] = field(default_factory=set)
    #: pids SIGSTOPped and never continued: the supervisor must replace them
    left_stopped: set[int] = field(default_factory=set)
    forged_sent: int = 0
    garbage_sent: int = 0
    control_errors: int = 0
    control_unanswered: int = 0
    #: (monotonic, seconds, during saturation) for each status round trip
    status_latency: list[tuple[float, float, bool]] = field(default_factory=list)
    saturation: tuple[float, float] | None = None
    reloads: Counter[str] = field(default_factory=Counter)
    session_pids: set[int] = field(default_factory=set)
    #: (monotonic, action, bot, pid) of every action aimed at one worker
    aimed: list[tuple[float, str, str, int]] = field(default_factory=list)

    def aim(self, action: str, bot: str, pid: int) -> None:
        self.aimed.append((time.monotonic(), action, bot, pid))


class Driver:
    def __init__(self, fleet: Fleet, seed: int, record: Record) -> None:
        self.fleet = fleet
        self.rng = random.Random(seed)
        self.record = record
        self.context = zmq.Context()
        self.pids: dict[str, int] = {}
        self._pids_at = 0.0
        self._continue_at: list[tuple[float, str, int]] = []
        self._added: list[str] = []
        self._hogs: list[subprocess.Popen[bytes]] = []
        self.lazy = self.context.socket(zmq.SUB)  # a tap that never reads, for the whole run
        self.lazy.setsockopt(zmq.RCVHWM, 10)
        self.lazy.setsockopt(zmq.RCVBUF, 4096)
        self.lazy.setsockopt(zmq.LINGER, 0)
        self.lazy.setsockopt(zmq.SUBSCRIBE, b"")
        self.lazy.connect(fleet.endpoint("tap"))
        self.actions: list[tuple[int, Callable[[], None]]] = [
            (4, self.kill_worker), (3, self.stop_worker), (1, self.kill_during_backup), (1, self.reload),
            (1, self.flood_events), (1, self.churn_tap), (1, self.bad_control),
        ]

    # -- the loop ------------------------------------------------------------------------
    def run(self, seconds: float, saturate: tuple[float, float] | None) -> None:
        started = time.monotonic()
        end = started + seconds
        weights = [w for w, _ in self.actions]
        while (now := time.monotonic()) < end:
            elapsed = now - started
            if saturate and not self._hogs and saturate[0] <= elapsed < saturate[1]:
                self.start_hogs()
            if self._hogs and elapsed >= saturate[1]:  # type: ignore[index]
                self.stop_hogs()
            self._continue_due(now)
            self.status_probe()
            action = self.rng.choices(self.actions, weights)[0][1]
            action()
            time.sleep(self.rng.uniform(0.05, 0.3))
        self.stop_hogs()

    def finish(self) -> None:
        """Continue nobody more; whatever is still stopped is the supervisor's to replace."""
        self.stop_hogs()
        for _, _, pid in self._continue_at:
            self.record.left_stopped.add(pid)
        self._continue_at.clear()
        self.lazy.close(0)
        self.context.term()

    # -- helpers ---------------------------------------------------------------------------
    def refresh_pids(self, force: bool = False) -> dict[str, int]:
        if force or time.monotonic() - self._pids_at > 0.5:
            try:
                status = self.fleet.control("status", timeout=5)
                self.pids = {b["bot_id"]: b["pid"] for b in status["bots"]
                             if b["pid"] and b["container_state"] == "running"}
                self.record.session_pids.update(self.pids.values())
            except Exception:  # noqa: BLE001 - a slow answer is measured by status_probe
                pass
            self._pids_at = time.monotonic()
        return self.pids

    def _victim(self) -> tuple[str, int] | None:
        pids = {b: p for b, p in self.refresh_pids().items() if b != FATAL_BOT and p not in self.record.stopped}
        if not pids:
            return None
        bot = self.rng.choice(sorted(pids))
        return bot, pids[bot]

    def _signal(self, bot: str, pid: int, sig: int) -> bool:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            self.record.aim(f"{signal.Signals(sig).name} (no such process)", bot, pid)
            return False
        self.record.aim(signal.Signals(sig).name, bot, pid)
        return True

    def _continue_due(self, now: float) -> None:
        due = [entry for entry in self._continue_at if entry[0] <= now]
        self._continue_at = [entry for entry in self._continue_at if entry[0] > now]
        for _, bot, pid in due:
            self._signal(bot, pid, signal.SIGCONT)

    def in_saturation(self) -> bool:
        return bool(self._hogs)

    # -- actions ---------------------------------------------------------------------------
    def status_probe(self) -> None:
        started = time.monotonic()
        try:
            self.fleet.control("status", timeout=10)
        except Exception:  # noqa: BLE001
            self.record.done["status_unanswered"] += 1
        self.record.status_latency.append((started, time.monotonic() - started, self.in_saturation()))

    def kill_worker(self) -> None:
        if (victim := self._victim()) and self._signal(*victim, signal.SIGKILL):
            self.record.done["sigkill"] += 1

    def stop_worker(self) -> None:
        victim = self._victim()
        if not victim or not self._signal(*victim, signal.SIGSTOP):
            return
        pid = victim[1]
        self.record.stopped.add(pid)
        self.record.done["sigstop"] += 1
        if self.rng.random() < 0.5:  # continued before (or after) it is judged stale
            self._continue_at.append((time.monotonic() + self.rng.uniform(0.2, TIMEOUT * 1.5), victim[0], pid))
            self.record.done["sigcont"] += 1
        else:
            self.record.left_stopped.add(pid)

    def kill_during_backup(self) -> None:
        victim = self._victim()
        if not victim:
            return
        bot, pid = victim
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.fleet.endpoint("control"))
        sock.send(encode_request(Request(uuid.uuid4().hex, "backup", {"bot": bot})))
        self.record.aim("backup requested", bot, pid)
        time.sleep(self.rng.uniform(0.0, 0.03))
        if self._signal(bot, pid, signal.SIGKILL):
            self.record.done["sigkill_in_backup"] += 1
        sock.close(0)

    def reload(self) -> None:
        kind = self.rng.choice(["add", "remove", "change", "invalid"])
        # the fleet stays within MAX_ADDED bots of its size: each bot with a full history costs
        # the supervisor about 180 KiB, so a fleet that grew by reloads (a walk that can only
        # drift up from zero added) would read as the supervisor's RSS growing
        if kind == "add" and len(self._added) >= MAX_ADDED:
            kind = "remove"
        elif kind == "remove" and not self._added:
            kind = "add"
        entries = self.fleet.entries
        if kind == "add":
            bot_id = f"x{len(self._added) + sum(self.record.reloads.values())}"
            entries.append({"id": bot_id, "simulated": {"seed": len(entries)}})
            self._added.append(bot_id)
        elif kind == "remove":
            gone = self._added.pop(self.rng.randrange(len(self._added)))
            entries[:] = [b for b in entries if b["id"] != gone]
        elif kind == "change":
            bot = self.rng.choice([b for b in entries if b["id"].startswith("b")])
            bot["simulated"]["message_rate"] = 0.0 if bot["simulated"].get("message_rate") else 1.0
            self.record.aim("reload: config changed", bot["id"], 0)
        if kind == "invalid":
            self.fleet.write(self.rng.choice(['[[bots]]\nid = "../x"\n', "[supervisor\n",
                                              "[supervisor]\nheartbeat_interval = nan\n"]))
        else:
            self.fleet.write()
        try:
            self.fleet.control("reload", timeout=10)
            self.record.reloads[f"{kind} applied"] += 1
        except Exception:  # noqa: BLE001 - refused (invalid) or slow
            self.record.reloads[f"{kind} refused"] += 1
        if kind == "invalid":
            self.fleet.write()  # the operator fixes the file; the next reload applies it

    def flood_events(self) -> None:
        sock = self.context.socket(zmq.XPUB)  # XPUB: sees the supervisor's subscription, so nothing is lost early
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.connect(self.fleet.endpoint("events"))
        if not sock.poll(1000):
            sock.close(0)
            return
        sock.recv()
        bots = self.fleet.ids()
        for i in range(self.rng.randrange(50, 300)):
            if self.rng.random() < 0.5:
                frames = [self.rng.randbytes(self.rng.randrange(0, 64)) for _ in range(self.rng.randrange(1, 5))]
                self.record.garbage_sent += 1
            else:
                heartbeat = Heartbeat(server=SERVER, bot=self.rng.choice(bots), pid=FORGED_PID, seq=i, ts=time.time(),
                                      bot_status=BotStatus.ONLINE)
                frames = [*encode(heartbeat), self.rng.randbytes(32)]
                self.record.forged_sent += 1
            sock.send_multipart(frames)
        self.record.done["floods"] += 1
        sock.close(linger=1000)

    def churn_tap(self) -> None:
        sock = self.context.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(self.fleet.endpoint("tap"))
        deadline = time.monotonic() + self.rng.uniform(0.0, 0.3)
        while time.monotonic() < deadline and sock.poll(20):
            sock.recv_multipart()
        sock.close(0)
        self.record.done["taps"] += 1

    def bad_control(self) -> None:
        requests: list[bytes] = [
            self.rng.randbytes(self.rng.randrange(0, 200)),
            msgpack.packb([1, 2, 3]),
            msgpack.packb({"id": 5, "command": "status", "args": {}}),
            msgpack.packb({"id": "x", "command": 7, "args": {}}),
            msgpack.packb({"id": "x", "command": "status", "args": []}),
            msgpack.packb({"id": "x", "command": "status", "args": {"bots": 5}}),
            msgpack.packb({"id": "x", "command": "send", "args": {"bot": "b00", "to": 1, "text": None}}),
            msgpack.packb({"id": "x", "command": "explode", "args": {}}),
            msgpack.packb({"id": "x" * 10_000, "command": "ping", "args": {}}),
        ]
        oversized = self.rng.random() < 0.2
        raw = b"\x00" * (5 * 2**20) if oversized else self.rng.choice(requests)
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.fleet.endpoint("control"))
        sock.send(raw)
        if oversized:  # libzmq drops the connection (MAXMSGSIZE): no answer, and no harm
            self.record.done["oversized"] += 1
        elif sock.poll(3000):
            reply = decode_reply(sock.recv())
            self.record.control_errors += 0 if reply.ok else 1
            self.record.done["bad_control"] += 1
        else:
            self.record.control_unanswered += 1
        sock.close(0)

    # -- CPU saturation ------------------------------------------------------------------
    def start_hogs(self) -> None:
        self._hogs = [subprocess.Popen([sys.executable, "-c", HOG], cwd=REPO, start_new_session=True)
                      for _ in range(os.cpu_count() or 2)]
        self.record.saturation = (time.monotonic(), 0.0)
        self.record.done["hogs"] = len(self._hogs)

    def stop_hogs(self) -> None:
        for hog in self._hogs:
            hog.kill()
            hog.wait(5)
        if self._hogs and self.record.saturation:
            self.record.saturation = (self.record.saturation[0], time.monotonic())
        self._hogs = []
