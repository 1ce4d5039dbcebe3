"""Bot apps: incoming message -> reply handed to the backend, through a trivial app in a real worker.

``python -m bench.apps`` (short by default) or as part of ``python -m bench``. One simulated bot
runs bench/app_trivial.py (it answers every message) under a real supervisor with the rate limit
off. The simulated session generates messages at a fixed rate, each from its own chat, stamping
each with the wall time it was delivered; the reply's message is stamped when the app's send
reached the backend (``send_text``). Both stamps are taken inside the one worker process, so
their difference is the app path alone: delivery to the app's thread, the handler, the
operation back through the bridge, the durable outbox, the backend. The tap only carries them.

Measured: p50/p99 at 100 and 1,000 messages/s; the highest rate one worker sustains (replies
keep up with 95 % of the offered rate); and the worker's added RSS for a loaded app (a worker
with the app against one without, both idle after answering).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from protocol import Event, Hello, MessageUpsert, decode
from protocol.topics import WELCOME

from .procs import Reaper, install_signal_handlers, wait_until
from .tap import TapReader

HERE = Path(__file__).resolve().parent
TARGET_P99_MS = 5.0
TARGET_RSS_MIB = 3.0
#: the durable outbox's sync mode for the bench (docs/sends.md): "full" fsyncs every send
OUTBOX_SYNC = "normal"


class ReplyTap(TapReader):
    """Pairs each reply with its incoming message by chat (every incoming message has its own)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint, name="apps-tap", hwm=10_000_000)
        self.welcomed = threading.Event()
        self.incoming: dict[str, float] = {}
        #: (arrival monotonic, latency seconds)
        self.latencies: list[tuple[float, float]] = []
        self.pids: dict[str, int] = {}
        self.replies: dict[str, int] = {}

    def on_frames(self, frames: list[bytes]) -> None:
        if frames == [WELCOME]:
            self.welcomed.set()
            return
        message = decode(frames[1])
        if isinstance(message, Hello):
            self.pids[message.bot] = message.pid
        if not (isinstance(message, Event) and isinstance(message.data, MessageUpsert)):
            return
        data = message.data
        with self.lock:
            if not data.from_me:
                self.incoming[data.chat] = data.timestamp
                return
            self.replies[message.bot] = self.replies.get(message.bot, 0) + 1
            sent_at = self.incoming.pop(data.chat, None)
            if sent_at is not None:
                self.latencies.append((time.monotonic(), data.timestamp - sent_at))

    def window(self, since: float) -> list[float]:
        with self.lock:
            return [lat for t, lat in self.latencies if t >= since]


def _config(root: Path, bots: list[dict[str, Any]]) -> Path:
    lines = ["[supervisor]", 'server_name = "benchapps"', f'auth_dir = "{root}/auth"', f'run_dir = "{root}/run"',
             "heartbeat_interval = 1.0", "start_interval = 0", "nice = 0", "messages_per_minute = 6000000",
             f"outbox_sync = \"{OUTBOX_SYNC}\"",
             'log_level = "warning"']
    for bot in bots:
        lines += ["[[bots]]", f'id = "{bot["id"]}"']
        if bot.get("app"):
            lines.append(f'app = "{HERE / "app_trivial.py"}:bot"')
        lines += ["[bots.simulated]", "connect_delay = 0.0", f"message_rate = {bot.get('rate', 0.0)}"]
    path = root / "botvisor.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Fleet:
    def __init__(self, root: Path, reaper: Reaper, bots: list[dict[str, Any]]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root, self.reaper = root, reaper
        self.config = _config(root, bots)
        self.tap = ReplyTap(f"ipc://{root}/run/tap.sock")
        self.tap.start()
        self.proc = reaper.popen([sys.executable, "-m", "supervisor.cli", "run", "-c", str(self.config)],
                                 log=root / "supervisor.log", cwd=HERE.parent)
        wait_until(lambda: self.tap.welcomed.is_set() or self.proc.poll() is not None, 30, "the supervisor's tap")
        if self.proc.poll() is not None:
            raise RuntimeError(f"the supervisor exited: {(root / 'supervisor.log').read_text()[-2000:]}")
        wait_until(lambda: all(b["id"] in self.tap.pids for b in bots), 30, "every worker's hello")
        self.reaper.saw(self.tap.pids.values())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except Exception:  # noqa: BLE001 - the reaper kills it
            pass
        self.tap.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def at_rate(workdir: Path, reaper: Reaper, rate: float, seconds: float, warmup: float) -> dict[str, Any]:
    fleet = Fleet(workdir / f"rate{int(rate)}", reaper, [{"id": "app", "app": True, "rate": rate}])
    try:
        wait_until(lambda: fleet.tap.replies.get("app", 0) > 0, 60, "the app's first reply", interval=0.02)
        time.sleep(warmup)  # the rate settles
        since = time.monotonic()
        before = fleet.tap.replies.get("app", 0)
        time.sleep(seconds)
        replies = fleet.tap.replies.get("app", 0) - before
        lat = fleet.tap.window(since)
    finally:
        fleet.close()
    if not lat:
        return {"rate": rate, "replies_per_s": 0.0, "error": "no replies"}
    return {"rate": rate, "replies_per_s": replies / seconds, "n": len(lat),
            "p50_ms": statistics.median(lat) * 1000, "p99_ms": _percentile(lat, 0.99) * 1000,
            "max_ms": max(lat) * 1000}


def _idle_memory(fleet: Fleet, settle: float) -> dict[str, Any]:
    time.sleep(settle)
    return {bot: psutil.Process(pid).memory_full_info() for bot, pid in fleet.tap.pids.items()}


def added_rss(workdir: Path, reaper: Reaper, settle: float) -> dict[str, Any]:
    """A worker with the trivial app loaded (after it answered) against one without an app, in the
    same fleet (the framework is preloaded by the forkserver for fleets with apps: shared pages) and
    in a fleet without apps (no preload)."""
    from protocol.client import ControlClient, ControlError

    alone = Fleet(workdir / "rss-noapps", reaper, [{"id": "plain"}])
    try:
        without = _idle_memory(alone, settle)["plain"]
    finally:
        alone.close()
    fleet = Fleet(workdir / "rss", reaper, [{"id": "plain"}, {"id": "app", "app": True}])
    try:
        with ControlClient(f"ipc://{fleet.root}/run/control.sock", timeout=10) as client:
            deadline = time.monotonic() + 30
            while not fleet.tap.replies.get("app"):  # until the app has loaded and answered
                try:
                    client.call("simulate", {"bot": "app", "from": "15550000001", "text": "hi"})
                except ControlError:
                    pass  # not connected yet
                if time.monotonic() > deadline:
                    raise RuntimeError("the app never answered")
                time.sleep(0.2)
        rss = _idle_memory(fleet, settle)
    finally:
        fleet.close()
    mib = 1024 * 1024
    return {"noapp_fleet_rss_mib": without.rss / mib, "plain_rss_mib": rss["plain"].rss / mib,
            "app_rss_mib": rss["app"].rss / mib,
            "added_rss_mib": (rss["app"].rss - rss["plain"].rss) / mib,
            "added_uss_mib": (rss["app"].uss - rss["plain"].uss) / mib,
            "added_vs_noapp_fleet_mib": (rss["app"].rss - without.rss) / mib}


def measure(workdir: Path, reaper: Reaper, *, seconds: float = 3.0, warmup: float = 1.5,
            max_rate: float = 16000.0) -> dict[str, Any]:
    results: dict[str, Any] = {"seconds": seconds, "rates": [], "sustained": None}
    for rate in (100.0, 1000.0):
        results["rates"].append(at_rate(workdir, reaper, rate, seconds, warmup))
    rate, best = 2000.0, None
    while rate <= max_rate:  # doubling until the replies fall behind the offered rate
        step = at_rate(workdir, reaper, rate, seconds, warmup)
        results.setdefault("steps", []).append(step)
        if step.get("replies_per_s", 0) < 0.95 * rate:
            break
        best = step
        rate *= 2
    results["sustained"] = best["replies_per_s"] if best else max(
        (r.get("replies_per_s", 0) for r in results["rates"] + results.get("steps", [])), default=0)
    results["memory"] = added_rss(workdir, reaper, settle=1.0)
    return results


def render(results: dict[str, Any]) -> str:
    rows = ["| offered msgs/s | replies/s | p50 | p99 | max | target |", "|---|---|---|---|---|---|"]
    for r in results["rates"] + results.get("steps", []):
        if "error" in r:
            rows.append(f"| {r['rate']:g} | 0 | - | - | - | {r['error']} |")
            continue
        target = ""
        if r["rate"] == 100:
            ok = r["p99_ms"] < TARGET_P99_MS
            target = f"p99 < {TARGET_P99_MS:g} ms: {'met' if ok else 'MISSED'} (x{r['p99_ms'] / TARGET_P99_MS:.2f})"
        rows.append(f"| {r['rate']:g} | {r['replies_per_s']:.0f} | {r['p50_ms']:.2f} ms | {r['p99_ms']:.2f} ms "
                    f"| {r['max_ms']:.1f} ms | {target} |")
    mem = results["memory"]
    ok = mem["added_vs_noapp_fleet_mib"] < TARGET_RSS_MIB
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return "\n".join([
        "## Bot apps: incoming message -> reply handed to the backend (one bot, trivial app)", "",
        f"Windows of {results['seconds']:g} s; both stamps taken in the worker (bench/apps.py); durable outbox "
        f"sync {OUTBOX_SYNC!r}, workers at nice 0; load average at the end {load}.", "",
        *rows, "",
        f"- most one worker sustains: **{results['sustained']:.0f} replies/s**",
        f"- worker RSS, idle: {mem['noapp_fleet_rss_mib']:.1f} MiB in a fleet without apps; in a fleet with apps "
        f"(framework preloaded, shared) {mem['plain_rss_mib']:.1f} MiB without an app, {mem['app_rss_mib']:.1f} MiB "
        f"with the app loaded (+{mem['added_rss_mib']:.2f} MiB RSS, +{mem['added_uss_mib']:.2f} MiB USS)",
        f"- **added RSS of a loaded app against a worker of a fleet without apps: "
        f"{mem['added_vs_noapp_fleet_mib']:.2f} MiB**; target < {TARGET_RSS_MIB:g} MiB: {'met' if ok else 'MISSED'} "
        f"(x{mem['added_vs_noapp_fleet_mib'] / TARGET_RSS_MIB:.2f})",
    ])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.apps", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=2.0, help="measurement window per rate (default 2)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--max-rate", type=float, default=16000.0, help="highest rate of the doubling steps")
    args = p.parse_args(argv)
    install_signal_handlers()
    workdir = Path(tempfile.mkdtemp(prefix="bva-", dir="/tmp"))
    reaper = Reaper()
    try:
        print(render(measure(workdir, reaper, seconds=args.seconds, warmup=args.warmup, max_rate=args.max_rate)))
    finally:
        reaper.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
