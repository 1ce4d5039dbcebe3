"""``stats.tap_dropped`` counts what a slow tap misses; zero counters are reported (issue 14, defect 3)."""

from __future__ import annotations

import time

import pytest
import zmq

from protocol.sequence import SequenceTracker
from supervisor.stats import COUNTERS

from .harness import wait_until
from .test_no_orphans import hellos


def test_every_counter_is_reported_zero_when_nothing_was_dropped(fleet_factory, launch):
    service, tap = launch(fleet_factory(["b1"]))
    hellos(tap, 1)
    stats = service.control("status")["stats"]
    assert {name: stats[name] for name in COUNTERS} == {name: 0 for name in COUNTERS}


@pytest.mark.timeout(150)
def test_a_tap_that_stops_reading_is_counted_in_tap_dropped_and_the_others_lose_nothing(fleet_factory, launch):
    # the lazy tap falls tap_queue behind in seconds; the reading one, slowed by a loaded
    # machine now and then, stays far within it
    fleet = fleet_factory([{"id": "chatty", "simulated": {"message_rate": 3000}}], tap_queue=20_000)
    service, tap = launch(fleet)
    hellos(tap, 1)
    context = zmq.Context()
    lazy = context.socket(zmq.SUB)
    lazy.setsockopt(zmq.RCVHWM, 10)
    lazy.setsockopt(zmq.RCVBUF, 4096)
    lazy.setsockopt(zmq.LINGER, 0)
    lazy.setsockopt(zmq.SUBSCRIBE, b"")
    lazy.connect(fleet.endpoint("tap"))  # and never reads
    try:
        tracker = SequenceTracker()
        seen = [0]

        def dropped() -> bool:
            deadline = time.monotonic() + 0.2
            while time.monotonic() < deadline:  # the clean tap keeps up meanwhile
                message = tap.read(0.05)
                if message is not None and message.bot == "chatty":
                    tracker.observe(message)
                    seen[0] += 1
            return service.control("status")["stats"]["tap_dropped"] > 0

        wait_until(dropped, timeout=90, what="the lazy tap's losses counted in stats.tap_dropped", interval=0)
        assert seen[0] > 100
        assert tracker.lost == 0, f"the tap that reads lost {tracker.lost} of {seen[0]} messages"
    finally:
        lazy.close(0)
        context.term()
