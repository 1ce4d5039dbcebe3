"""The worker's bus under backpressure: a full queue is waited on without spinning, then
counted as dropped; nothing is lost while the supervisor keeps reading. Each scenario runs in
a fresh interpreter (tests/bus_scenarios.py says why)."""

from __future__ import annotations

from .harness import run_scenario


def run(scenario: str) -> dict:
    return run_scenario("tests.bus_scenarios", scenario, timeout=60)


def test_a_full_queue_is_waited_on_without_spinning_then_counted_as_dropped():
    result = run("full")
    assert 0.25 <= result["waited"] < 2.0, result  # SEND_WAIT_S (0.3 s here), bounded
    assert result["spent"] < result["waited"] / 2, f"waiting for room burned the CPU: {result}"
    assert result["dropped_after_event"] == 1
    assert result["dropped_after_heartbeat"] == 2, "a dropped heartbeat is counted too"


def test_nothing_is_lost_while_the_reader_keeps_up_slowly():
    result = run("slow")
    assert result["dropped"] == 0
    assert result["received"] == list(range(60))
