"""``python -m bench webhooks``: the gateway's event path and its REST latency.

1. Tap to webhook: N bots (simulated) produce ``message-upsert`` events at a total rate R;
   the bench's own tap notes when each event is on the tap, a receiver (bench/webhook_receiver.py,
   uvicorn) notes when its webhook arrives; p50/p99 of the difference at each rate, and loss
   (events on the tap never received once the backlog had ``--drain`` seconds to clear). Each
   rate under every ``--syncs`` ([gateway] outbox_sync); the worst latency of each second of
   the window, for this half and for the half before it (the worker's timestamp to our tap).
2. The sustained maximum: rates doubling from ``--max-from`` until an event is lost or p99
   reaches KEEPS_UP_MS (a backlog that grows through the window); the last clean rate.
3. REST ``GET /v1/status`` with M bots: p50/p99 over sequential requests, against the same
   ``status`` on the control socket directly (the gateway's overhead as a ratio).

Every process is started here and killed by pid at the end (bench/procs.py's Reaper).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import zmq

from gateway.envelope import event_id
from protocol import Event, decode
from protocol.client import ControlClient

from .configs import toml_value
from .procs import Reaper, install_signal_handlers, wait_until

SECRET = "bench-secret"
#: a rate is sustained when nothing is lost and p99 stays under this (the gateway keeps up,
#: rather than building a backlog that only drains after the window)
KEEPS_UP_MS = 1000.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: the short ipc run dirs made under /tmp, removed at the end
RUN_DIRS: list[Path] = []


def write_config(root: Path, bots: int, rate: float, port: int, hook_port: int | None,
                 outbox_sync: str = "full") -> Path:
    run_dir = Path(tempfile.mkdtemp(prefix="bvw-", dir="/tmp"))
    RUN_DIRS.append(run_dir)
    lines = ["[supervisor]", 'server_name = "wh"', f"run_dir = {toml_value(str(run_dir))}",
             f"auth_dir = {toml_value(str(root / 'auth'))}", "start_interval = 0.0", "heartbeat_interval = 5.0",
             "messages_per_minute = 6000", "event_history = 2000", "tap_queue = 1000000"]
    for i in range(bots):
        lines += ["[[bots]]", f'id = "b{i:03d}"', "[bots.simulated]", "connect_delay = 0.0",
                  f"message_rate = {rate / bots!r}"]
    lines += ["[gateway]", f'listen = "127.0.0.1:{port}"', f"data_dir = {toml_value(str(root / 'gw'))}",
              f'outbox_sync = "{outbox_sync}"']
    if hook_port:
        lines += ["[[gateway.webhooks]]", f'url = "http://127.0.0.1:{hook_port}/hook"', f'secret = "{SECRET}"',
                  'name = "bench"', 'events = ["message-upsert"]', "concurrency = 64"]
    path = root / "botvisor.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Stack:
    def __init__(self, reaper: Reaper, root: Path, bots: int, rate: float, webhooks: bool,
                 outbox_sync: str = "full") -> None:
        self.reaper, self.root = reaper, root
        cwd = Path(__file__).resolve().parent.parent
        root.mkdir(parents=True, exist_ok=True)
        self.port, self.hook_port = free_port(), (free_port() if webhooks else None)
        self.config = write_config(root, bots, rate, self.port, self.hook_port, outbox_sync)
        self.context = zmq.Context()
        py = sys.executable
        if self.hook_port:
            self.receiver = reaper.popen([py, "-m", "bench.webhook_receiver", str(self.hook_port)],
                                         log=root / "receiver.log", cwd=cwd)
        self.tap = self.context.socket(zmq.SUB)
        #: (the worker's ts, on our tap) of the message-upsert events of the last read_tap
        self.upstream: list[tuple[float, float]] = []
        self.tap.setsockopt(zmq.RCVHWM, 0)
        self.tap.setsockopt(zmq.SUBSCRIBE, b"")
        self.supervisor = reaper.popen([py, "-m", "supervisor.cli", "run", "-c", str(self.config)],
                                       log=root / "supervisor.log", cwd=cwd)
        run_dir = self.config.read_text().split("run_dir = ")[1].split("\n")[0].strip('"')
        self.control_endpoint = f"ipc://{run_dir}/control.sock"
        wait_until(lambda: Path(run_dir, "tap.sock").exists(), 30, "the supervisor's tap", 0.02)
        self.tap.connect(f"ipc://{run_dir}/tap.sock")
        self.gateway = self.start_gateway()
        self.base = f"http://127.0.0.1:{self.port}"
        wait_until(self._ready, 60, "the gateway ready", 0.05)
        # ready comes before the HTTP API is built (gateway/boot.py), on a thread whose imports
        # hold the GIL for ~0.5 s of CPU: the steady state is measured once it is built
        wait_until(self._built, 60, "the gateway's HTTP API built", 0.05)

    def start_gateway(self) -> Any:
        return self.reaper.popen([sys.executable, "-m", "gateway", "-c", str(self.config), "--log-level", "warning"],
                                 log=self.root / "gateway.log", cwd=Path(__file__).resolve().parent.parent)

    def _built(self) -> bool:
        try:
            return httpx.get(self.base + "/openapi.json", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def _ready(self) -> bool:
        try:
            return httpx.get(self.base + "/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def read_tap(self, seconds: float) -> dict[str, float]:
        """event id -> when it was on our tap, for ``seconds``. The payloads are decoded after the
        window: decoding each as it came cost this process ~10 % of a core at 1,000 events/s,
        taken from the processes measured."""
        arrived: list[tuple[float, bytes]] = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if not self.tap.poll(int(left * 1000) + 1):
                continue
            while True:  # what is queued, without a poll each
                try:
                    frames = self.tap.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                if len(frames) == 2:
                    arrived.append((time.time(), frames[1]))
        seen: dict[str, float] = {}
        self.upstream = []
        for now, payload in arrived:
            message = decode(payload)
            if isinstance(message, Event) and message.type == "message-upsert":
                seen[event_id(message.server, message.bot, message.pid, message.seq, message.ts)] = now
                self.upstream.append((message.ts, now))
        return seen

    def attempts(self) -> dict[str, int]:
        """The gateway's delivery attempts so far by result (2xx, timeout, error, ...)."""
        text = httpx.get(self.base + "/metrics", timeout=30).text
        out: dict[str, int] = {}
        for line in text.splitlines():
            if line.startswith("botvisor_webhook_attempts_total{"):
                result = line.split('result="', 1)[1].split('"', 1)[0]
                if (n := int(float(line.rsplit(" ", 1)[1]))):
                    out[result] = n
        return out

    def arrivals(self) -> dict[str, float]:
        rows = httpx.get(f"http://127.0.0.1:{self.hook_port}/dump", timeout=30).json()
        return {eid: t for eid, t in rows}

    def close(self) -> None:
        self.tap.close(0)
        self.context.term()
        self.reaper.kill_all()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worst_by_second(pairs: list[tuple[float, float]], opened: float) -> list[int]:
    worst: dict[int, float] = {}
    for start, end in pairs:
        k = int(end - opened)
        worst[k] = max(worst.get(k, 0.0), (end - start) * 1000)
    return [round(worst[k]) for k in sorted(worst)]


def delivery_run(reaper: Reaper, root: Path, bots: int, rate: float, window: float, warmup: float,
                 drain: float, outbox_sync: str = "full") -> dict[str, Any]:
    stack = Stack(reaper, root, bots, rate, webhooks=True, outbox_sync=outbox_sync)
    try:
        stack.read_tap(warmup)  # the fleet connects; its first events are not timed
        opened, cpu0 = time.time(), cpu_seconds(stack.gateway.pid)
        seen = stack.read_tap(window)
        deadline = time.monotonic() + drain
        while True:
            got = stack.arrivals()
            missing = [e for e in seen if e not in got]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        cpu = cpu_seconds(stack.gateway.pid) - cpu0
        attempts = stack.attempts()
        delivered = max(1, sum(1 for t in got.values() if t >= opened))  # the warm-up's late ones too
        lat = [(got[e] - t) * 1000 for e, t in seen.items() if e in got]
        # the worst latency of each second of the window: a stall shows as one bad second, a
        # backlog that never drains as a rising line
        worst: dict[int, float] = {}
        for e, t in seen.items():
            if e in got:
                k = int(t - opened)
                worst[k] = max(worst.get(k, 0.0), (got[e] - t) * 1000)
        return {"bots": bots, "outbox_sync": outbox_sync, "offered": rate, "events": len(seen), "achieved": round(len(seen) / window, 1),
                "received": len(lat), "lost": len(missing), "p50_ms": round(pct(lat, 0.5), 2),
                "p99_ms": round(pct(lat, 0.99), 2), "max_ms": round(max(lat), 2) if lat else None,
                "gateway_cpu_us_per_event": round(cpu / delivered * 1e6), "attempts": attempts,
                "worst_ms_by_second": [round(worst[k]) for k in sorted(worst)],
                "upstream_worst_ms_by_second": _worst_by_second(stack.upstream, opened),
                "load": load_average()}
    finally:
        stack.close()


def ready_run(reaper: Reaper, root: Path, bots: int, starts: int) -> dict[str, Any]:
    """Start to ready: exec of ``botvisor gateway`` to its first ``/readyz`` 200, against a
    running supervisor with ``bots`` bots, ``starts`` times (each gateway SIGKILLed after)."""
    stack = Stack(reaper, root, bots, 0.0, webhooks=True)
    try:
        times = []
        with httpx.Client(base_url=stack.base, timeout=1) as client:
            for _ in range(starts):
                stack.gateway.kill()
                stack.gateway.wait(10)
                t = time.monotonic()
                stack.gateway = stack.start_gateway()

                def ready() -> bool:
                    try:
                        return client.get("/readyz").status_code == 200
                    except httpx.HTTPError:
                        return False

                times.append((wait_until(ready, 60, "the gateway ready", 0.005) - t) * 1000)
        return {"bots": bots, "starts": starts, "median_ms": round(statistics.median(times), 1),
                "min_ms": round(min(times), 1), "max_ms": round(max(times), 1), "load": load_average()}
    finally:
        stack.close()


def status_run(reaper: Reaper, root: Path, bots: int, requests: int) -> dict[str, Any]:
    stack = Stack(reaper, root, bots, 0.0, webhooks=False)
    try:
        key = __import__("gateway.keys", fromlist=["KeyStore"]).KeyStore(
            stack.config.with_name("botvisor.keys.json")).add("bench")
        auth = {"Authorization": f"Bearer {key}"}
        with ControlClient(stack.control_endpoint, timeout=30) as control:
            wait_until(lambda: all(b["container_state"] == "running" for b in control.call("status")["bots"]),
                       120, f"{bots} bots running", 0.2)
            direct = []
            for _ in range(requests):
                t = time.perf_counter()
                control.call("status")
                direct.append((time.perf_counter() - t) * 1000)
        with httpx.Client(base_url=stack.base, timeout=30) as client:
            client.get("/v1/status", headers=auth)
            via = []
            for _ in range(requests):
                t = time.perf_counter()
                r = client.get("/v1/status", headers=auth)
                via.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and len(r.json()["bots"]) == bots
        return {"bots": bots, "requests": requests, "rest_p50_ms": round(pct(via, 0.5), 2),
                "rest_p99_ms": round(pct(via, 0.99), 2), "control_p50_ms": round(pct(direct, 0.5), 2),
                "control_p99_ms": round(pct(direct, 0.99), 2),
                "overhead_ratio_p50": round(statistics.median(via) / statistics.median(direct), 2)}
    finally:
        stack.close()


def render(results: dict[str, Any]) -> str:
    out = ["## Gateway: tap to webhook", "",
           ("| bots | outbox_sync | offered ev/s | achieved ev/s | events | lost | p50 ms | p99 ms | max ms "
            "| gateway CPU µs/event | worst ms of each second, tap to webhook (worker to tap) | load average |"),
           "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results["delivery"]:
        seconds = " ".join(map(str, r.get("worst_ms_by_second", [])))
        upstream = " ".join(map(str, r.get("upstream_worst_ms_by_second", [])))
        out.append(f"| {r['bots']} | {r.get('outbox_sync', 'full')} | {r['offered']:g} | {r['achieved']:g} | "
                   f"{r['events']} | {r['lost']} | {r['p50_ms']} | {r['p99_ms']} | {r['max_ms']} | "
                   f"{r['gateway_cpu_us_per_event']} | {seconds} ({upstream}) | {r['load']} |")
    if results.get("maximum") is not None:
        out += ["", f"Sustained maximum (zero loss, p99 under {KEEPS_UP_MS:g} ms): "
                    f"**{results['maximum']:g} events/s** offered (target: p99 < 50 ms at 1,000/s)."]
    if results.get("ready"):
        r = results["ready"]
        out += ["", "## Gateway: start to ready", "",
                "| bots | starts | median ms | min ms | max ms | load average |", "|---:|---:|---:|---:|---:|---|",
                f"| {r['bots']} | {r['starts']} | {r['median_ms']} | {r['min_ms']} | {r['max_ms']} | {r['load']} |",
                "", ("Exec of `python -m gateway` to its first `/readyz` 200 (tap welcomed, outbox open), the "
                     "previous one SIGKILLed (target: well under a second).")]
    out += ["", "## Gateway: REST status", "",
            "| bots | requests | REST p50 ms | REST p99 ms | control p50 ms | control p99 ms | REST / control |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["status"]:
        out.append(f"| {r['bots']} | {r['requests']} | {r['rest_p50_ms']} | {r['rest_p99_ms']} | "
                   f"{r['control_p50_ms']} | {r['control_p99_ms']} | {r['overhead_ratio_p50']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench webhooks", description=__doc__.splitlines()[0])
    p.add_argument("--bots", type=int, default=50, help="bots producing events (default 50)")
    p.add_argument("--rates", default="100,1000", help="total events/s to time, comma-separated (default 100,1000)")
    p.add_argument("--syncs", default="full,normal",
                   help="[gateway] outbox_sync values each rate is timed with (default full,normal)")
    p.add_argument("--window", type=float, default=10.0, help="seconds timed per rate (default 10)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before timing (default 3)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds the backlog has to clear (default 10)")
    p.add_argument("--max-from", type=float, default=1000.0, help="first rate of the maximum search (0: skip)")
    p.add_argument("--max-to", type=float, default=16000.0, help="last rate tried (default 16,000)")
    p.add_argument("--ready-starts", type=int, default=5, help="gateway starts timed to /readyz (0: skip)")
    p.add_argument("--ready-bots", type=int, default=50, help="bots of the fleet those starts face (default 50)")
    p.add_argument("--status-bots", default="200", help="fleet sizes for REST status (default 200)")
    p.add_argument("--status-requests", type=int, default=200)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="also write the tables (markdown) here")
    p.add_argument("--keep", action="store_true", help="keep the scratch directories (configs, logs)")
    args = p.parse_args(argv)
    install_signal_handlers()
    reaper = Reaper()
    work = Path(tempfile.mkdtemp(prefix="bvwh-", dir="/tmp"))
    results: dict[str, Any] = {"delivery": [], "maximum": None, "ready": None, "status": []}
    try:
        for i, rate in enumerate(float(r) for r in args.rates.split(",") if r):
            for sync in (x for x in args.syncs.split(",") if x):
                results["delivery"].append(delivery_run(reaper, work / f"d{i}{sync}", args.bots, rate, args.window,
                                                        args.warmup, args.drain, sync))
                print(results["delivery"][-1], flush=True)
        rate = args.max_from
        while rate and rate <= args.max_to:
            run = delivery_run(reaper, work / f"m{int(rate)}", args.bots, rate, args.window, args.warmup, args.drain)
            print(run, flush=True)
            results["delivery"].append(run)
            if run["lost"] or run["events"] == 0 or not run["p99_ms"] < KEEPS_UP_MS:
                break
            results["maximum"] = rate
            rate *= 2
        if args.ready_starts:
            results["ready"] = ready_run(reaper, work / "ready", args.ready_bots, args.ready_starts)
            print(results["ready"], flush=True)
        for i, n in enumerate(int(b) for b in args.status_bots.split(",") if b):
            results["status"].append(status_run(reaper, work / f"s{i}", n, args.status_requests))
            print(results["status"][-1], flush=True)
    finally:
        reaper.kill_all()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            for run_dir in RUN_DIRS:
                shutil.rmtree(run_dir, ignore_errors=True)
    text = render(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
