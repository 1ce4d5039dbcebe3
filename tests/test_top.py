"""`botvisor top` driven on a pseudo-terminal: it starts, shows every bot sorted by health,
follows changes live, and quits on q."""

from __future__ import annotations

import re
import signal

from protocol import ContainerState, StateChange

from .terminal import Terminal, botvisor


def screen_rows(text: str, bots: list[str]) -> list[str]:
    """The bot ids in the order of the last full table drawn."""
    last = text[text.rfind("BOT"):]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", last)
    order = []
    for line in plain.splitlines():
        words = line.split()
        if words and words[0] in bots and words[0] not in order:
            order.append(words[0])
    return order


def test_top_shows_every_bot_worst_first_and_quits_on_q(fleet_factory, launch):
    bots = ["alpha", "beta", "gamma", "doomed"]
    fleet = fleet_factory(["alpha", "beta", "gamma", {"id": "doomed", "simulated": {"logout_after": 0.1}}])
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "doomed" and m.state is ContainerState.FAILED,
                 what="doomed failed")
    term = Terminal(botvisor("top", "-c", str(fleet.config_path), "--interval", "0.2"))
    try:
        term.wait_for(lambda text: all(b in text for b in bots) and "q quits" in text, 20, "every bot on screen")
        assert "\x1b[?1049h" in term.text, "full screen (the alternate screen)"
        term.wait_for(lambda text: len(screen_rows(text, bots)) == 4, 10, "a full table")
        assert screen_rows(term.text, bots)[0] == "doomed", "the failed bot comes first"
        # a change on the fleet shows up without restarting top
        service.control("stop", {"bots": ["beta"]})
        term.wait_for(lambda text: re.search(r"beta\s+(\x1b\[[0-9;]*m)*stopped", text) is not None, 10,
                      "beta stopped on screen")
        term.type(b"q")
        assert term.wait_exit(10) == 0
    finally:
        term.close()


def test_top_says_when_no_supervisor_is_running(fleet_factory):
    fleet = fleet_factory(["b1"])
    term = Terminal(botvisor("top", "-c", str(fleet.config_path)))
    try:
        assert term.wait_exit(20) == 3
        assert "no supervisor is running" in term.text
    finally:
        term.close()


def test_top_outlives_a_supervisor_restart(fleet_factory, launch):
    from .harness import Service

    fleet = fleet_factory([{"id": "b1", "autostart": True}])
    first, tap = launch(fleet)
    term = Terminal(botvisor("top", "-c", str(fleet.config_path), "--interval", "0.2"))
    second = None
    try:
        term.wait_for(lambda text: f"(pid {first.pid})" in text, 20, "the first supervisor's pid")
        first.signal(signal.SIGTERM)
        assert first.wait(15) == 0
        term.wait_for(lambda text: "does not answer" in text, 10, "the supervisor reported missing")
        second = Service(fleet)
        term.wait_for(lambda text: f"(pid {second.pid})" in text, 20, "the new supervisor's pid")
        assert term.proc.poll() is None
        term.type(b"q")
        assert term.wait_exit(10) == 0
    finally:
        term.close()
        if second is not None:
            second.cleanup()


def test_top_shows_the_worst_bots_that_fit_on_a_small_screen(fleet_factory, launch):
    bots = [f"b{i}" for i in range(8)]
    fleet = fleet_factory(bots[:-1] + [{"id": "b7", "simulated": {"logout_after": 0.1}}])
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b7" and m.state is ContainerState.FAILED,
                 what="b7 failed")
    term = Terminal(botvisor("top", "-c", str(fleet.config_path)), rows=12)
    try:
        term.wait_for(lambda text: "more (healthier) bot(s)" in text, 20, "the rows that do not fit summed up")
        assert screen_rows(term.text, bots)[0] == "b7", "the failed bot is on screen, first"
        term.type(b"q")
        assert term.wait_exit(10) == 0
    finally:
        term.close()
