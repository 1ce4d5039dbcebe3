"""The supervisor's per-event cost on its real code path, in CPU time and in instructions.

A real ``Supervisor`` (real config, containers, secrets, sequence tracking, event history,
tap socket) is fed pre-signed frames of a realistic mix, exactly as its events socket would
hand them over: ``Supervisor._on_worker_message`` for each one (``--mode handler``), or the
frames really sent by a publisher process to its events socket and drained by its own
``_on_events`` (``--mode socket``, which adds the receive side). A subscriber process drains
the tap, so the republish is real too (its ZeroMQ I/O thread's CPU is this process's CPU).

CPU time is ``time.process_time()`` (all threads of this process), so a busy machine slows the
wall clock but not the figure much; ``--instructions`` runs the same loop under valgrind's
callgrind twice (E and 2E events) and reports the difference per event, which no other load on
the machine can move.

    python -m bench.hotpath                      # handler and socket modes, 20,000 events
    python -m bench.hotpath --instructions       # + instructions per event (callgrind, slow)
    python -m bench.hotpath --decoders           # + each decoder per message kind: msgspec vs the schema
"""

from __future__ import annotations

import argparse
import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

#: the traffic of a fleet whose bots chat: mostly messages, some presence, heartbeats, a few
#: connection and creds changes (shares of the mix)
MIX = (("message-upsert", 0.70), ("presence-update", 0.12), ("heartbeat", 0.12),
       ("connection-update", 0.04), ("creds-update", 0.02))
TEXTS = ["ok", "hello there", "can you send me the invoice for last month please?",
         "👍", "Meeting moved to 15:30, room 4B. Bring the printed draft " * 3]


def _frames(n_bots: int, events: int, server: str, secrets: dict[str, bytes], pids: dict[str, int],
            seed: int = 8) -> list[list[bytes]]:
    """``events`` signed [topic, payload, signature] frames, seq consecutive per bot."""
    from protocol import (BotStatus, ConnectionUpdate, CredsUpdate, Event, Heartbeat, MessageUpsert,
                          PresenceUpdate, encode)
    from protocol.signing import sign

    rng = random.Random(seed)
    kinds, weights = zip(*MIX)
    seqs = dict.fromkeys(secrets, 0)
    out = []
    now = time.time()
    for i in range(events):
        bot = f"b{rng.randrange(n_bots) + 1}"
        pid, seq = pids[bot], seqs[bot]
        seqs[bot] += 1
        kind = rng.choices(kinds, weights)[0]
        ts = now + i * 1e-4
        chat = f"1555{rng.randrange(10**7):07d}@s.whatsapp.net"
        if kind == "heartbeat":
            message: Any = Heartbeat(server, bot, pid, seq, ts, BotStatus.ONLINE, 0, 0)
        else:
            if kind == "message-upsert":
                group = rng.random() < 0.3
                data: Any = MessageUpsert(id=f"3EB0{i:016X}", chat=f"1203630{i % 97:05d}@g.us" if group else chat,
                                          sender=chat, timestamp=ts, from_me=rng.random() < 0.1,
                                          text=rng.choice(TEXTS), push_name="Ana María", is_group=group)
            elif kind == "presence-update":
                data = PresenceUpdate(jid=chat, presence=rng.choice(["available", "composing", "paused"]), chat=chat)
            elif kind == "connection-update":
                data = ConnectionUpdate(connection="open")
            else:
                data = CredsUpdate(verified=True, phone_number="15550001111", last_updated=ts, reason="connected")
            from protocol.events import EVENT_OF_DATA
            message = Event(server, bot, pid, seq, ts, EVENT_OF_DATA[type(data)], data)
        topic, payload = encode(message)
        out.append([topic, payload, sign(secrets[bot], topic, payload)])
    return out


class _FakeProcess:
    """Stands for a running worker: the supervisor only needs its pid here."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sentinel = -1

    def resources(self) -> tuple[int, float]:
        return 0, 0.0


def _supervisor(root: Path, n_bots: int, secrets: dict[str, bytes] | None = None) -> Any:
    from protocol import ContainerState
    from protocol.config import load_config
    from protocol.signing import new_secret
    from supervisor.arbiter import Supervisor

    lines = ["[supervisor]", 'server_name = "hot"', f'auth_dir = "{root / "auth"}"', f'run_dir = "{root / "run"}"']
    for i in range(1, n_bots + 1):
        lines += ["[[bots]]", f'id = "b{i}"', 'backend = "simulated"']
    (root / "botvisor.toml").write_text("\n".join(lines) + "\n")
    sup = Supervisor(load_config(root / "botvisor.toml"))
    sup._prepare_run_dir()
    sup._bind()
    for i, container in enumerate(sup.manager, start=1):
        container.process = _FakeProcess(10_000 + i)
        container.state = ContainerState.RUNNING
        sup.secrets[container.bot.id] = secrets[container.bot.id] if secrets else new_secret()
    return sup


def _pids(n_bots: int) -> dict[str, int]:
    return {f"b{i}": 10_000 + i for i in range(1, n_bots + 1)}  # as _supervisor numbers them


def make_frames(path: Path, n_bots: int, events: int) -> None:
    """Frames and the secrets that signed them, pickled: ``--frames`` runs then measure the
    handling alone (under callgrind, encoding them would count as much as handling them)."""
    import pickle

    from protocol.signing import new_secret

    secrets = {f"b{i}": new_secret() for i in range(1, n_bots + 1)}
    path.write_bytes(pickle.dumps((secrets, _frames(n_bots, events, "hot", secrets, _pids(n_bots)))))


_DRAIN = """
import sys, zmq
ctx = zmq.Context(); s = ctx.socket(zmq.SUB); s.setsockopt(zmq.RCVHWM, 0); s.subscribe(b"")
s.connect(sys.argv[1]); n = 0
print("ready", flush=True)
while True:
    f = s.recv_multipart()
    if f[0] == b"hot.@end": break
    n += 1
print(n, flush=True)
"""

_PUBLISH = """
import pickle, sys, zmq
frames = pickle.load(open(sys.argv[2], "rb"))
ctx = zmq.Context(); s = ctx.socket(zmq.XPUB); s.setsockopt(zmq.SNDHWM, 0); s.connect(sys.argv[1])
s.recv()  # the supervisor's subscription: from here on nothing sent is dropped
print("ready", flush=True)
sys.stdin.readline()
for f in frames: s.send_multipart(f)
s.close(linger=-1)
ctx.term()  # waits until every message is handed over: pyzmq does not at exit, and the tail was lost
"""


def run(events: int = 20_000, n_bots: int = 200, mode: str = "handler", warmup: int = 2000,
        frames_file: Path | None = None) -> dict[str, Any]:
    """Feed ``events`` frames (after ``warmup`` more) to a real supervisor; CPU per event."""
    import pickle

    import zmq

    from supervisor import arbiter

    batch = getattr(arbiter, "EVENTS_BATCH", 2000)  # also runs on code before batched republishing
    root = Path(tempfile.mkdtemp(prefix="botvisor-hotpath-"))
    procs: list[subprocess.Popen[str]] = []
    sup = None
    try:
        if frames_file is not None:
            secrets, frames = pickle.loads(frames_file.read_bytes())
            frames = frames[:warmup + events]
            sup = _supervisor(root, n_bots, secrets)
        else:
            sup = _supervisor(root, n_bots)
            frames = _frames(n_bots, warmup + events, sup.server, sup.secrets, _pids(n_bots))
        tap = sup.config.endpoint("tap")
        drain = subprocess.Popen([sys.executable, "-c", _DRAIN, tap], stdout=subprocess.PIPE, text=True)
        procs.append(drain)
        assert drain.stdout is not None and drain.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10  # the tap's subscription must have reached the XPUB
        while not sup.tap.poll(100) and time.monotonic() < deadline:
            pass
        sup._on_tap_subscriptions()
        handle = sup._on_worker_message
        flush = getattr(sup, "_flush_tap", lambda: None)
        for f in frames[:warmup]:
            handle(f)
        flush()
        if mode == "handler":
            todo = frames[warmup:]
            wall, cpu, loop = time.perf_counter(), time.process_time(), time.thread_time()
            for i, f in enumerate(todo, start=1):
                handle(f)
                if not i % batch:  # as _on_events does after each batch it reads
                    flush()
            flush()
            cpu, wall, loop = time.process_time() - cpu, time.perf_counter() - wall, time.thread_time() - loop
        else:
            blob = root / "frames.pickle"
            blob.write_bytes(pickle.dumps(frames[warmup:]))
            sup.events.setsockopt(zmq.RCVHWM, 0)  # the publisher's pipe, made after this: no drops
            pub = subprocess.Popen([sys.executable, "-c", _PUBLISH, sup.config.endpoint("events"), str(blob)],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            procs.append(pub)
            assert pub.stdin is not None and pub.stdout is not None
            # the SUB attaches the new pipe (and sends its subscription) only when it is used
            end = time.monotonic() + 30
            while not select.select([pub.stdout], [], [], 0.01)[0] and time.monotonic() < end:
                sup.events.getsockopt(zmq.EVENTS)
            assert pub.stdout.readline().strip() == "ready"
            pub.stdin.write("go\n")
            pub.stdin.flush()
            seen0 = sup.stats["rejected"] + sup.stats["stale"]
            done = lambda: sum(sum(c.events_total.values()) for c in sup.manager)  # noqa: E731
            target = done() + sum(1 for f in frames[warmup:] if b".event." in f[0])
            wall, cpu, loop = time.perf_counter(), time.process_time(), time.thread_time()
            end = time.monotonic() + 120
            while done() < target and time.monotonic() < end:
                if sup.events.poll(1000):
                    sup._on_events()
            cpu, wall, loop = time.process_time() - cpu, time.perf_counter() - wall, time.thread_time() - loop
            # a figure over fewer events than sent would be CPU per event too low (it was, once)
            assert done() >= target, f"{target - done()} of the events sent never reached the supervisor"
            assert sup.stats["rejected"] + sup.stats["stale"] == seen0, sup.stats
        sup.tap.send_multipart([b"hot.@end", b""])
        relayed = int(drain.communicate(timeout=30)[0].strip())
        return {"mode": mode, "events": events, "bots": n_bots, "cpu_s": cpu, "wall_s": wall,
                "us_per_event": cpu / events * 1e6, "loop_us_per_event": loop / events * 1e6, "wall_us_per_event": wall / events * 1e6,
                "relayed": relayed, "rejected": sup.stats["rejected"], "lost": sum(c.events_lost for c in sup.manager),
                "load": os.getloadavg()}
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        if sup is not None:
            for sock in (sup.events, sup.tap, sup.control, sup.commands):
                sock.close(0)
            sup.context.term()
            sup.poller.close()
        shutil.rmtree(root, ignore_errors=True)
        del zmq


def instructions(events: int, n_bots: int) -> float | None:
    """Instructions per event (handler mode): callgrind at E and 2E events, the difference / E."""
    if shutil.which("valgrind") is None:
        return None
    counts = []
    with tempfile.TemporaryDirectory() as frames_dir:
        frames = Path(frames_dir) / "frames.pickle"
        make_frames(frames, n_bots, 500 + 2 * events)
        for e in (events, 2 * events):
            counts.append(_callgrind(["--events", str(e), "--bots", str(n_bots), "--mode", "handler", "--json",
                                      "--warmup", "500", "--frames", str(frames)]))
    return (counts[1] - counts[0]) / events


def _callgrind(args: list[str]) -> int:
    """Instructions executed by ``python -m bench.hotpath ARGS`` under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", "bench.hotpath",
               *args]
        subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=1800,
                       env={**os.environ, "PYTHONHASHSEED": "0"})
        total = next(line for line in out.read_text().splitlines() if line.startswith("summary:") or
                     line.startswith("totals:"))
        return int(total.split()[1])


def decoders(n_bots: int = 200, per_kind: int = 200) -> list[dict[str, Any]]:
    """µs per payload of each message in the mix, through the supervisor's decoder (msgspec
    Structs, protocol/wire.py), ``decode`` (the same, then the dataclasses) and the schema's
    converter alone (protocol/schema.py, today's explaining path): best of 5, process CPU time."""
    import timeit

    from protocol import codec
    from protocol.signing import new_secret

    secrets = {f"b{i}": new_secret() for i in range(1, n_bots + 1)}
    by_kind: dict[str, list[bytes]] = {}
    for topic, payload, _sig in _frames(n_bots, 20 * per_kind, "hot", secrets, _pids(n_bots)):
        by_kind.setdefault(topic.split(b".", 2)[2].decode(), []).append(payload)
    paths = {"wire (msgspec)": getattr(codec, "decode_wire", None), "decode (msgspec + dataclasses)": codec.decode,
             "schema (explaining path)": getattr(codec, "_explained_decode", codec.decode)}
    rows = []
    for kind, payloads in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        payloads = payloads[:per_kind]
        row: dict[str, Any] = {"kind": kind, "bytes": sum(map(len, payloads)) / len(payloads)}
        for name, fn in paths.items():
            if fn is not None:
                timer = timeit.Timer(lambda fn=fn: [fn(p) for p in payloads], timer=time.process_time)
                row[name] = min(timer.repeat(repeat=5, number=20)) / (20 * len(payloads)) * 1e6
        rows.append(row)
    return rows


def decoder_table(rows: list[dict[str, Any]]) -> str:
    names = [k for k in rows[0] if k not in ("kind", "bytes")]
    out = ["| message | bytes | " + " | ".join(f"{n} µs" for n in names) + " | schema / wire |",
           "|---|---|" + "---|" * (len(names) + 1)]
    for r in rows:
        ratio = r["schema (explaining path)"] / r["wire (msgspec)"] if "wire (msgspec)" in r else float("nan")
        out.append(f"| {r['kind']} | {r['bytes']:.0f} | " + " | ".join(f"{r[n]:.2f}" for n in names) +
                   f" | {ratio:.1f}x |")
    return "\n".join(out)


def table(results: list[dict[str, Any]], ins: float | None) -> str:
    rows = ["| mode | events | bots | CPU µs/event (process) | of it the loop's thread | wall µs/event | relayed "
            "| rejected | lost | load (1/5/15 min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        load = "/".join(f"{x:.1f}" for x in r["load"])
        rows.append(f"| {r['mode']} | {r['events']:,} | {r['bots']} | {r['us_per_event']:.1f} | "
                    f"{r['loop_us_per_event']:.1f} | {r['wall_us_per_event']:.1f} | {r['relayed']:,} | {r['rejected']} | {r['lost']} | {load} |")
    if ins is not None:
        rows.append(f"\nInstructions per event (handler mode, callgrind, difference of two runs): {ins:,.0f}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotpath", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--bots", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=2000)
    parser.add_argument("--mode", choices=["handler", "socket", "both"], default="both")
    parser.add_argument("--instructions", action="store_true", help="also count instructions (valgrind, slow)")
    parser.add_argument("--instruction-events", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="print the raw result as JSON")
    parser.add_argument("--frames", type=Path, help="pickled frames from make_frames (instructions mode)")
    parser.add_argument("--decoders", action="store_true", help="also time each decoder per message kind")
    args = parser.parse_args(argv)
    modes = ["handler", "socket"] if args.mode == "both" else [args.mode]
    results = [run(args.events, args.bots, mode, args.warmup, args.frames) for mode in modes]
    ins = instructions(args.instruction_events, args.bots) if args.instructions else None
    decoded = decoders(args.bots) if args.decoders else None
    if args.json:
        print(json.dumps({"results": results, "instructions_per_event": ins, "decoders": decoded}))
    else:
        print(table(results, ins))
        if decoded:
            print(f"\nDecoders, µs per payload (load {'/'.join(f'{x:.1f}' for x in os.getloadavg())}):\n")
            print(decoder_table(decoded))
    return 0


if __name__ == "__main__":
    sys.exit(main())
