"""The restart policy as pure functions: backoff curve, intensity window, exit-code contract."""

from __future__ import annotations

import random

import pytest

from protocol import exit_codes
from supervisor.restart import (
    ExitAction,
    RestartPolicy,
    backoff_delay,
    classify_exit,
    reconnect_delay,
    within_intensity,
)

NO_JITTER = RestartPolicy(initial=0.5, factor=2.0, max=10.0, jitter=0.0)


@pytest.mark.parametrize(
    ("consecutive", "delay"),
    [(1, 0.0), (2, 0.5), (3, 1.0), (4, 2.0), (5, 4.0), (6, 8.0), (7, 10.0), (50, 10.0), (10_000, 10.0)],
)
def test_first_restart_is_immediate_then_delays_grow_exponentially_up_to_the_cap(consecutive, delay):
    assert backoff_delay(consecutive, NO_JITTER) == pytest.approx(delay)


def test_jitter_spreads_delays_within_its_fraction_and_never_past_the_cap():
    policy = RestartPolicy(initial=1.0, factor=2.0, max=5.0, jitter=0.2)
    rng = random.Random(7)
    samples = [backoff_delay(3, policy, rng) for _ in range(2000)]  # base 2.0
    assert min(samples) >= 1.6 and max(samples) <= 2.4
    assert len({round(s, 3) for s in samples}) > 100, "jitter must actually spread restarts"
    assert all(backoff_delay(20, policy, rng) <= 5.0 for _ in range(500))


def test_reconnect_delays_follow_the_same_curve_from_the_first_retry():
    assert [reconnect_delay(a, NO_JITTER) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("history", "now", "allowed", "kept"),
    [
        ((), 100.0, True, 1),
        ((99.0, 99.5), 100.0, True, 3),  # 3 restarts within the window, limit 3: allowed
        ((98.0, 99.0, 99.5), 100.0, False, 4),  # the 4th within the window: too many
        ((10.0, 20.0, 30.0), 100.0, True, 1),  # old restarts fall out of the window
        ((89.9, 95.0, 99.0), 100.0, False, 4),  # 89.9 is still inside a 10.2 s window
    ],
)
def test_intensity_allows_max_restarts_within_the_window(history, now, allowed, kept):
    policy = RestartPolicy(max_restarts=3, restart_window=10.2)
    new_history, ok = within_intensity(history, now, policy)
    assert ok is allowed
    assert len(new_history) == kept and new_history[-1] == now


@pytest.mark.parametrize(
    ("exitcode", "stop_requested", "action"),
    [
        (exit_codes.OK, True, ExitAction.STOP),
        (-9, True, ExitAction.STOP),  # killed after the stop timeout: still the stop we asked for
        (exit_codes.FATAL, False, ExitAction.FAIL),
        (exit_codes.CRASH, False, ExitAction.RESTART),
        (1, False, ExitAction.RESTART),
        (-11, False, ExitAction.RESTART),  # SIGSEGV
        (exit_codes.OK, False, ExitAction.RESTART),  # an unrequested clean exit is still a bot gone
    ],
)
def test_exit_codes_are_a_contract(exitcode, stop_requested, action):
    assert classify_exit(exitcode, stop_requested=stop_requested) is action


def test_exit_codes_read_as_words():
    assert exit_codes.describe(78) == "exit 78 (fatal)"
    assert exit_codes.describe(-9) == "SIGKILL"
    assert exit_codes.describe(3) == "exit 3"


def test_the_next_health_check_is_just_past_the_earliest_deadline_and_at_most_a_second_away():
    from supervisor.health import MAX_CHECK_INTERVAL, PAST_DEADLINE, next_check

    assert next_check([105.0, 102.5, 104.0], now=102.0) == pytest.approx(0.5 + PAST_DEADLINE)
    assert next_check([], now=50.0) == MAX_CHECK_INTERVAL
    assert next_check([500.0], now=100.0) == MAX_CHECK_INTERVAL
    assert next_check([99.0], now=100.0) == pytest.approx(PAST_DEADLINE), "overdue: look at once"
