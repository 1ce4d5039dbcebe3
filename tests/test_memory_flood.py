"""A flood on the events endpoint does not leave the supervisor's memory at its peak (issue 14, defect 5).

tracemalloc showed the Python heap flat under chaos; what grew was native: forged messages
backed up in libzmq's queue and glibc kept the pages after they were read. The flood here is
the soak's (well-shaped, unsigned heartbeats for real bots), as fast as one process sends.
"""

from __future__ import annotations

import random
import time

import psutil
import zmq

from protocol import BotStatus, Heartbeat, encode

from .harness import wait_until
from .test_no_orphans import hellos

FLOOD_S = 6.0
ALLOWED_MIB = 3.0


def test_rss_returns_near_its_baseline_after_a_flood_of_forged_messages(fleet_factory, launch):
    fleet = fleet_factory([f"b{i}" for i in range(3)])
    service, tap = launch(fleet)
    hellos(tap, 3)
    for _ in range(20):  # warm the paths a flood takes (first rejections, status) before the baseline
        service.control("status")
    supervisor = psutil.Process(service.pid)
    baseline = supervisor.memory_info().rss
    context = zmq.Context()
    flood = context.socket(zmq.XPUB)
    flood.setsockopt(zmq.LINGER, 0)
    flood.setsockopt(zmq.SNDHWM, 0)
    flood.connect(fleet.endpoint("events"))
    try:
        assert flood.poll(5000), "the supervisor's subscription"
        flood.recv()
        rng = random.Random(14)
        sent, peak = 0, baseline
        until = time.monotonic() + FLOOD_S
        while time.monotonic() < until:
            for i in range(1000):
                message = Heartbeat(server=fleet.server, bot=f"b{i % 3}", pid=999_999, seq=sent + i, ts=time.time(),
                                    bot_status=BotStatus.ONLINE)
                flood.send_multipart([*encode(message), rng.randbytes(32)])
            sent += 1000
            peak = max(peak, supervisor.memory_info().rss)
    finally:
        flood.close(0)
        context.term()
    counts: list[int] = []  # what was queued when the flooder closed is lost with it: wait for a steady count

    def steady() -> bool:
        counts.append(service.control("status")["stats"]["rejected_signature"])
        return len(counts) >= 2 and counts[-1] == counts[-2] > 0

    wait_until(steady, 60, "the supervisor to have read the flood", interval=0.5)
    grown = lambda: (supervisor.memory_info().rss - baseline) / 2**20  # noqa: E731
    wait_until(lambda: grown() < ALLOWED_MIB, timeout=25,
               what=f"RSS back within {ALLOWED_MIB} MiB of its baseline (now +{grown():.1f} MiB, "
                    f"peak +{(peak - baseline) / 2**20:.1f} MiB, {sent} forged messages)", interval=0.5)
