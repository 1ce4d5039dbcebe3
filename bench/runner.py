"""Runs every scenario for every size and subject, in one process, into one results dict.

Each subject runs alone (the others are down), one after the other, so they share the
machine's state of the moment but never its CPU. A scenario that fails is recorded as an
error and the run goes on; every subject is closed (killed by pid) whatever happens.
"""

from __future__ import annotations

import os
import random
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import (
    codec_cost,
    configs,
    eventpath,
    machine,
    neonize_memory,
    peers,
    profile,
    scenarios,
)
from .procs import Reaper
from .subjects import Botvisor, Circus, Subject, Supervisord


@dataclass
class Options:
    sizes: list[int]
    kills: int = 20
    mass_fraction: float = 0.1
    idle: float = 30.0
    fast_heartbeat: float = 1.0
    stop_timeout: float | None = None
    peer_hang_bound: float = 4.0
    event_seconds: float = 3.0
    max_rate: float = 64000.0
    warmup: float = 2.0
    settle: float = 0.5
    profile_seconds: float = 4.0
    peers: bool = True
    #: which peers to run: supervisord, circus (its default check_delay), circus-cd1
    peer_names: tuple[str, ...] = ("supervisord", "circus", "circus-cd1")
    neonize_n: int | None = None
    seed: int = 8
    #: bot apps (bench/apps.py): seconds per measured rate (0: off)
    apps_seconds: float = 3.0


def log(text: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, options: Options, workdir: Path, reaper: Reaper) -> None:
        self.o, self.workdir, self.reaper = options, workdir, reaper
        self.rng = random.Random(options.seed)
        self.errors: list[str] = []

    def attempt(self, what: str, into: dict[str, Any], key: str, fn: Callable[[], Any]) -> Any:
        log(what)
        try:
            into[key] = fn()
        except KeyboardInterrupt:
            raise
        except Exception as exc:
            into[key] = {"error": f"{type(exc).__name__}: {exc}"}
            self.errors.append(f"{what}: {type(exc).__name__}: {exc}")
            log(f"  failed: {exc}")
            traceback.print_exc(file=sys.stderr)
        return into[key]

    def run(self) -> dict[str, Any]:
        o = self.o
        started = time.monotonic()
        results: dict[str, Any] = {"machine": machine.describe(), "sizes": {}, "options": vars(o).copy()}
        results["interpreter_startup"] = machine.interpreter_startup()
        results["codec"] = codec_cost.measure()
        if o.peers:
            ok, why = peers.ensure(self.workdir / "peers-pip.log")
            results["peers"] = "ok" if ok else why
            if not ok:
                log(f"peers skipped: {why}")
            results["machine"]["peers"] = peers.versions()
        else:
            results["peers"] = "skipped (--no-peers)"
        for n in o.sizes:
            results["sizes"][n] = self.run_size(n, results["peers"] == "ok")
        neonize: dict[str, Any] = {}
        self.attempt("neonize: a plain process that imports neonize and fails its dial", neonize, "reference",
                     lambda: neonize_memory.reference(self.workdir / "neonize-ref", self.reaper))
        n = o.neonize_n if o.neonize_n is not None else max(o.sizes)
        if n:
            self.attempt(f"neonize: {n} bots under botvisor", neonize, "fleet",
                         lambda: neonize_memory.fleet(self.workdir / "neonize", n, self.reaper))
        results["neonize"] = neonize
        if o.apps_seconds:
            from . import apps

            self.attempt("bot apps: message -> reply through a trivial app", results, "apps",
                         lambda: apps.measure(self.workdir / "apps", self.reaper, seconds=o.apps_seconds))
        results["errors"] = self.errors
        results["elapsed"] = time.monotonic() - started
        results["machine"]["load_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return results

    def run_size(self, n: int, with_peers: bool) -> dict[str, Any]:
        o = self.o
        root = self.workdir / f"n{n}"
        out: dict[str, Any] = {"supervision": {}, "settings": {}}
        normal = configs.BotvisorSettings(n=n, stop_timeout=o.stop_timeout)
        subject = Botvisor(root / "botvisor", normal, self.reaper)
        out["settings"]["botvisor"] = normal.describe()
        out["supervision"]["botvisor"] = self.supervise(subject, hang=False)
        fast = configs.BotvisorSettings(n=n, heartbeat_interval=o.fast_heartbeat, stop_timeout=o.stop_timeout)
        subject = Botvisor(root / "botvisor-fast", fast, self.reaper)
        out["settings"]["botvisor (fast heartbeat)"] = fast.describe()
        out["botvisor_fast"] = self.supervise_fast(subject, fast)
        if with_peers:
            worker_config = configs.write_botvisor_config(root / "peer-workers", configs.BotvisorSettings(n=n))
            bin_dir = peers.bin_dir()
            makers = {
                "supervisord": lambda: Supervisord(root / "supervisord", n, self.reaper, bin_dir, worker_config),
                "circus": lambda: Circus(root / "circus", n, self.reaper, bin_dir, worker_config, None),
                "circus-cd1": lambda: Circus(root / "circus-cd1", n, self.reaper, bin_dir, worker_config, 1.0),
            }
            for name in o.peer_names:
                peer = makers[name]()
                out["settings"][peer.name] = peer.settings_text
                out["supervision"][peer.name] = self.supervise(peer, hang=True)
        out["event_path"] = {}
        self.attempt(f"N={n} event path (botvisor and the bare relay)", out, "event_path",
                     lambda: eventpath.event_path(root / "events", n, self.reaper, o.event_seconds,
                                                  o.profile_seconds, o.warmup,
                                                  tuple(r for r in eventpath.RATES if r <= o.max_rate) or (o.max_rate,)))
        return out

    def supervise(self, subject: Subject, hang: bool) -> dict[str, Any]:
        """cold start, crash, mass crash, idle, memory, [hang], shutdown on one subject."""
        o, r = self.o, self.rng
        res: dict[str, Any] = {}
        label = f"N={subject.n} {subject.name}:"
        try:
            cold = self.attempt(f"{label} cold start", res, "cold", lambda: scenarios.cold_start(subject, 60 + subject.n))
            if "error" in cold:
                return res
            scenarios.settle(subject, o.settle)
            self.attempt(f"{label} crash x{o.kills}", res, "crash", lambda: scenarios.crash(subject, o.kills, r))
            self.attempt(f"{label} mass crash {o.mass_fraction:.0%}", res, "mass",
                         lambda: scenarios.mass_crash(subject, o.mass_fraction, r))
            scenarios.settle(subject, o.settle)
            self.attempt(f"{label} idle {o.idle:g} s", res, "idle", lambda: scenarios.idle(subject, o.idle))
            self.attempt(f"{label} memory", res, "memory", lambda: scenarios.memory(subject))
            if hang:
                self.attempt(f"{label} hang (bound {o.peer_hang_bound:g} s)", res, "hang",
                             lambda: scenarios.hang(subject, o.peer_hang_bound, r))
                scenarios.settle(subject, o.settle)
            self.attempt(f"{label} shutdown", res, "shutdown", lambda: scenarios.shutdown(subject, 60))
        finally:
            subject.close()
        return res

    def supervise_fast(self, subject: Botvisor, settings: configs.BotvisorSettings) -> dict[str, Any]:
        """botvisor with fast heartbeats: idle CPU, then a hung worker."""
        o, r = self.o, self.rng
        res: dict[str, Any] = {}
        label = f"N={subject.n} botvisor (heartbeat {settings.heartbeat_interval:g} s):"
        timeout = settings.heartbeat_interval * 3
        stop = settings.stop_timeout if settings.stop_timeout is not None else 10.0
        res["heartbeat_timeout"], res["stop_timeout"] = timeout, stop
        try:
            cold = self.attempt(f"{label} cold start", res, "cold", lambda: scenarios.cold_start(subject, 60 + subject.n))
            if "error" in cold:
                return res
            scenarios.settle(subject, o.settle)
            self.attempt(f"{label} idle {o.idle:g} s", res, "idle", lambda: scenarios.idle(subject, o.idle))
            if o.profile_seconds:
                self.attempt(f"{label} py-spy of the idle supervisor", res, "idle_profile",
                             lambda: profile.top(subject.pid, max(5.0, o.profile_seconds), subject.root / "idle.txt"))
            self.attempt(f"{label} hang", res, "hang", lambda: scenarios.hang(subject, timeout + stop + 5, r))
            self.attempt(f"{label} shutdown", res, "shutdown", lambda: scenarios.shutdown(subject, 60))
        finally:
            subject.close()
        return res
