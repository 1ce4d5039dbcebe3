"""`botvisor tap` as an operator uses it: filters, --json, --count, --timeout, colour and QR on a
terminal, several endpoints at once, and a tap that outlives a supervisor restart."""

from __future__ import annotations

import json
import signal
import subprocess

from protocol import Hello

from .harness import REPO, Service, make_fleet
from .terminal import Lines, Terminal, botvisor


def tap(fleet, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(botvisor("tap", "-c", str(fleet.config_path), *args), cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def json_lines(done: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_glob_bot_filters_and_several_types(fleet_factory, launch):
    fleet = fleet_factory([{"id": "shop-1", "simulated": {"message_rate": 20.0}}, "shop-2",
                           {"id": "other", "simulated": {"message_rate": 20.0}}])
    service, _ = launch(fleet)
    seen = json_lines(tap(fleet, "--bot", "shop-*", "--json", "--count", "12", "--timeout", "20"))
    assert len(seen) == 12 and {m["bot"] for m in seen} <= {"shop-1", "shop-2"}
    assert {m["bot"] for m in seen} == {"shop-1", "shop-2"}, "both shop bots heartbeat every 0.2 s"
    typed = json_lines(tap(fleet, "--type", "heartbeat", "--type", "message-upsert", "--json", "--count", "20",
                           "--timeout", "20"))
    assert {m["kind"] for m in typed} <= {"heartbeat", "event"}
    assert {m.get("type") for m in typed if m["kind"] == "event"} == {"message-upsert"}
    assert {m["kind"] for m in typed} == {"heartbeat", "event"}
    two = json_lines(tap(fleet, "--bot", "other", "--bot", "shop-?", "--type", "heartbeat", "--json", "--count",
                         "9", "--timeout", "20"))
    assert {m["bot"] for m in two} == {"other", "shop-1", "shop-2"}


def test_json_lines_carry_the_topic_and_every_payload_field(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    launch(fleet)
    (heartbeat,) = json_lines(tap(fleet, "--type", "heartbeat", "--json", "--count", "1", "--timeout", "20"))
    assert heartbeat["topic"] == "test.b1.heartbeat"
    assert {"v", "kind", "server", "bot", "pid", "seq", "ts", "bot_status"} <= set(heartbeat)


def test_count_exits_0_and_timeout_exits_1_when_nothing_matches(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    launch(fleet)
    counted = tap(fleet, "--type", "heartbeat", "--count", "3", "--timeout", "20")
    assert counted.returncode == 0 and len(counted.stdout.splitlines()) == 3
    assert all(" heartbeat " in line for line in counted.stdout.splitlines())
    nothing = tap(fleet, "--bot", "nobody-*", "--timeout", "0.5")
    assert nothing.returncode == 1 and nothing.stdout == ""
    short = tap(fleet, "--type", "heartbeat", "--count", "1000", "--timeout", "0.6")
    assert short.returncode == 1, "--count not reached within --timeout"
    unknown = tap(fleet, "--type", "gossip", "--timeout", "1")
    assert unknown.returncode == 2 and "unknown --type gossip" in unknown.stderr


def test_colour_and_qr_codes_on_a_terminal_only(fleet_factory, launch):
    fleet = fleet_factory([{"id": "b1", "simulated": {"paired": False, "pair_after": 1000, "qr_every": 0.2}}])
    launch(fleet)
    term = Terminal(botvisor("tap", "-c", str(fleet.config_path), "--type", "connection-update", "--count", "2",
                             "--timeout", "20"))
    try:
        assert term.wait_exit(30) == 0
        assert "\x1b[34mconnection-update\x1b[0m" in term.text, "the event type in colour"
        assert "qr=<scan below>" in term.text
        assert sum(ch in "█▀▄" for ch in term.text) > 200, "a QR code drawn in block characters"
    finally:
        term.close()
    piped = tap(fleet, "--type", "connection-update", "--count", "2", "--timeout", "20")
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout and "█" not in piped.stdout


def test_one_tap_over_two_supervisors(tmp_path, launch):
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = make_fleet(tmp_path / "one", ["b1"], server_name="one")
    two = make_fleet(tmp_path / "two", ["b1"], server_name="two")
    for fleet in (one, two):
        launch(fleet)
    seen = json_lines(subprocess.run(
        botvisor("tap", "--endpoint", one.endpoint("tap"), "--endpoint", two.endpoint("tap"), "--type", "heartbeat",
                 "--json", "--count", "10", "--timeout", "20"), cwd=REPO, capture_output=True, text=True, timeout=30))
    assert {m["server"] for m in seen} == {"one", "two"}


def test_the_same_tap_keeps_printing_across_a_supervisor_restart(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    first, in_test_tap = launch(fleet)
    old = in_test_tap.wait_for(lambda m: isinstance(m, Hello), what="the first hello")
    printer = Lines(botvisor("tap", "-c", str(fleet.config_path), "--json"))
    second = None
    try:
        printer.wait_for(lambda line: json.loads(line)["kind"] == "heartbeat", 20, "a heartbeat before the restart")
        first.signal(signal.SIGTERM)
        assert first.wait(15) == 0
        mark = len(printer.lines)
        second = Service(fleet)
        if fleet.deferred:
            second.control("start", {"bots": fleet.deferred})
        # heartbeats keep coming, so one from the new worker proves the tap reconnected
        # whenever it did
        printer.wait_for(lambda line: json.loads(line)["kind"] == "heartbeat" and json.loads(line)["pid"] != old.pid,
                         20, "the new worker's heartbeat on the same tap", start=mark)
        assert printer.proc.poll() is None, "the tap never exited"
    finally:
        printer.close()
        if second is not None:
            second.cleanup()



def test_a_tap_is_back_within_a_fraction_of_a_second_when_its_supervisor_returns(tmp_path):
    """PUB/SUB keeps nothing for a tap that is not connected yet, so the tap's retry interval is
    what it misses of a supervisor that comes back: a cluster shard restarted after a SIGKILL
    publishes its bots' first state changes 0.5-1 s after binding (tests/test_cluster.py), and
    with libzmq's backoff to 1 s a `tap --fleet` had come back after all of them."""
    import time

    import zmq

    from supervisor.cli.tap import connect

    endpoint = f"ipc://{tmp_path / 'tap.sock'}"
    context = zmq.Context()
    tap = connect(context, [endpoint], [""])

    def read_for(seconds: float) -> None:  # as the tap's loop does (libzmq re-subscribes in it)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if tap.poll(10):
                tap.recv_multipart()

    delays = []
    try:
        for away in (1.7, 2.0, 2.3, 2.6):  # long enough for a backoff to reach 1 s; at other phases of it
            read_for(away)
            own = zmq.Context()  # the supervisor's own process in real life
            supervisor = own.socket(zmq.XPUB)
            supervisor.setsockopt(zmq.LINGER, 0)
            supervisor.bind(endpoint)
            bound = time.monotonic()
            while not supervisor.poll(10):  # its subscription: the tap is connected again
                read_for(0.0)
                assert time.monotonic() - bound < 5, "the tap never came back"
            delays.append(time.monotonic() - bound)
            supervisor.close()
            own.term()  # away again (the ipc socket file goes with it)
    finally:
        tap.close(0)
        context.term()
    assert max(delays) < 0.5, f"the tap came back {', '.join(f'{d:.2f}' for d in delays)} s after its supervisor"
