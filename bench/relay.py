"""The event path's helper processes: ``python -m bench.relay {publisher,relay,sink} ...``.

* sink: a SUB on a tap endpoint (botvisor's, or the bare relay's) that counts events in a
  window, counts seq gaps per (bot, pid) as loss, and measures latency from the message's
  ``ts`` (stamped by the worker as it sent it) to arrival. Prints one JSON object.
* relay: the bare ceiling: SUB (bound) -> msgpack decode -> XPUB (bound), no schema, no
  signature, no bookkeeping: what Python + pyzmq + msgpack allow on this machine.
* publisher: SOCKETS XPUB sockets connected to the relay, sending botvisor-shaped event
  payloads (the real encoder's bytes, re-packed with a new seq) as fast as backpressure allows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import msgpack
import zmq

WELCOME = b"botvisor.welcome"


def sink(endpoint: str, warmup: float, duration: float) -> dict[str, object]:
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 1_000_000)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    last: dict[tuple[str, int], int] = {}
    gaps = events = 0
    latencies: list[float] = []
    start = time.monotonic()
    begin, end = start + warmup, start + warmup + duration
    unpackb = msgpack.unpackb
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if not sock.poll(int((end - now) * 1000) + 1):
            continue
        for _ in range(1000):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if len(frames) != 2:
                continue
            arrived, mono = time.time(), time.monotonic()
            body = unpackb(frames[1], raw=False)
            key = (body["bot"], body["pid"])
            seq = body["seq"]
            if key in last and seq > last[key] + 1:
                gaps += seq - last[key] - 1
            last[key] = max(seq, last.get(key, -1))
            if body.get("kind") == "event" and begin <= mono < end:
                events += 1
                latencies.append(arrived - body["ts"])
    sock.close(0)
    context.term()
    latencies.sort()

    def q(p: float) -> float | None:
        return latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))] if latencies else None

    return {"events": events, "rate": events / duration, "gaps": gaps, "sources": len(last),
            "p50": q(50), "p99": q(99), "max": latencies[-1] if latencies else None}


def relay(inbound: str, outbound: str) -> None:
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 200_000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(inbound)
    pub = context.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    pub.setsockopt(zmq.XPUB_NODROP, 1)
    pub.bind(outbound)
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    poller.register(pub, zmq.POLLIN)
    unpackb = msgpack.unpackb
    while True:  # ended by the bench, by pid
        ready = dict(poller.poll(1000))
        if pub in ready:
            while True:
                try:
                    pub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
        if sub in ready:
            for _ in range(2000):
                try:
                    topic, payload = sub.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                unpackb(payload, raw=False)  # what any relay that looks at messages must pay
                try:
                    pub.send_multipart([topic, payload], zmq.NOBLOCK)
                except zmq.Again:
                    pass


def publisher(endpoint: str, sockets: int, first: int) -> None:
    from protocol import Event, EventType, MessageUpsert, encode

    context = zmq.Context()
    socks, bodies, topics = [], [], []
    for i in range(sockets):
        bot = f"b{first + i}"
        data = MessageUpsert(id="SIM0000000001", chat="15550000000@s.whatsapp.net", sender="15550000000@s.whatsapp.net",
                             timestamp=time.time(), from_me=False, text="simulated message 1", push_name="Simulated")
        topic, payload = encode(Event("bench", bot, os.getpid() * 1000 + i, 0, time.time(), EventType.MESSAGE_UPSERT,
                                      data))
        sock = context.socket(zmq.XPUB)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.XPUB_NODROP, 1)
        sock.connect(endpoint)
        socks.append(sock)
        bodies.append(msgpack.unpackb(payload, raw=False))
        topics.append(topic)
    packb = msgpack.packb
    while True:  # ended by the bench, by pid
        for sock, body, topic in zip(socks, bodies, topics):
            body["seq"] += 1
            body["ts"] = time.time()
            try:
                sock.send_multipart([topic, packb(body, use_bin_type=True)], zmq.NOBLOCK)
            except zmq.Again:
                body["seq"] -= 1  # backpressure: nothing lost, try again next round
                time.sleep(0.0005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.relay")
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("sink")
    p.add_argument("endpoint")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=5.0)
    p = sub.add_parser("relay")
    p.add_argument("inbound")
    p.add_argument("outbound")
    p = sub.add_parser("publisher")
    p.add_argument("endpoint")
    p.add_argument("--sockets", type=int, required=True)
    p.add_argument("--first", type=int, default=1)
    args = parser.parse_args(argv)
    if args.role == "sink":
        print(json.dumps(sink(args.endpoint, args.warmup, args.duration)), flush=True)
    elif args.role == "relay":
        relay(args.inbound, args.outbound)
    else:
        publisher(args.endpoint, args.sockets, args.first)
    return 0


if __name__ == "__main__":
    sys.exit(main())
