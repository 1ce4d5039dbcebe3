"""The supervisor's timers (supervisor/timers.py): due order, cancellation, and the per-pass budget."""

from __future__ import annotations

from supervisor.timers import Timers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_due_timers_run_in_the_order_they_fell_due_and_a_cancelled_one_never_runs():
    clock = Clock()
    timers = Timers(clock)
    ran: list[str] = []
    timers.call_later(0.2, lambda: ran.append("late"))
    timers.call_later(0.0, lambda: ran.append("first"))
    timers.call_later(0.0, lambda: ran.append("second"))
    timers.call_later(0.1, lambda: ran.append("cancelled")).cancel()
    timers.run_due()
    assert ran == ["first", "second"]
    clock.now += 0.5
    timers.run_due()
    assert ran == ["first", "second", "late"]
    assert timers.next_deadline() is None


def test_a_budget_leaves_the_rest_of_the_due_timers_for_the_next_pass_in_order():
    # a fleet's start is a timer per worker: the loop must get back to its sockets in between
    clock = Clock()
    timers = Timers(clock)
    ran: list[int] = []

    def work(i: int) -> None:
        ran.append(i)
        clock.now += 0.01  # each start takes 10 ms

    for i in range(10):
        timers.call_later(0.0, lambda i=i: work(i))
    timers.run_due(budget=0.025)
    assert ran == [0, 1, 2], "stops at the first timer that ends past the budget"
    assert timers.next_deadline() is not None and timers.next_deadline() <= clock.now, "the rest is still due"
    timers.run_due(budget=0.025)
    assert ran == [0, 1, 2, 3, 4, 5]
    timers.run_due()
    assert ran == list(range(10))
