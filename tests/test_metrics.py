"""The Prometheus endpoint, scraped over loopback against a fleet in a known state."""

from __future__ import annotations

import os
import signal
import socket
import urllib.request
from pathlib import Path

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from protocol import ContainerState, Event, EventType, Hello, Notice, StateChange
from protocol.config import ConfigError, parse_config, split_listen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, frozenset], float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_match_a_known_fleet_state(fleet_factory, launch):
    port = free_port()
    bots = [
        {"id": "live", "simulated": {"message_rate": 50.0}},
        {"id": "banned", "simulated": {"ban_after": 0.0}},  # fatal exit 78 -> failed at once
        {"id": "idle", "autostart": False},  # configured, never started
        {"id": "killed"},
    ]
    fleet = fleet_factory(bots, heartbeat_interval=0.1)
    fleet.extra = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    fleet.write()
    service, tap = launch(fleet)
    first = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "killed", what="killed's hello")
    os.kill(first.pid, signal.SIGKILL)
    replaced = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "killed" and m.pid != first.pid,
                            what="killed's replacement")
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "banned" and m.state is ContainerState.FAILED,
                 what="banned failed")
    live = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "live", what="live's hello")
    tap.wait_for(lambda m: sum(isinstance(x, Event) and x.bot == "live" and x.type is EventType.MESSAGE_UPSERT
                               for x in tap.seen) >= 20, what="20 messages from live")
    for bot, pid in (("live", live.pid), ("killed", replaced.pid)):
        tap.wait_for(lambda m, bot=bot, pid=pid: m.bot == bot and m.pid == pid and m.seq >= 3,
                     what=f"{bot} heartbeating")
    messages_before = sum(isinstance(x, Event) and x.bot == "live" and x.type is EventType.MESSAGE_UPSERT
                          for x in tap.seen)

    samples = scrape(port)
    names = {name for name, _ in samples}
    assert all(n.startswith("botvisor_") for n in names), sorted(n for n in names if not n.startswith("botvisor_"))

    assert value(samples, "botvisor_bot_up", bot="live") == 1
    assert value(samples, "botvisor_bot_up", bot="killed") == 1
    assert value(samples, "botvisor_bot_up", bot="banned") == 0
    assert value(samples, "botvisor_bot_up", bot="idle") == 0
    for bot, state in (("live", "running"), ("banned", "failed"), ("idle", "stopped"), ("killed", "running")):
        for each in ContainerState:
            assert value(samples, "botvisor_bot_state", bot=bot, state=each.value) == (each.value == state), \
                (bot, each)
    assert value(samples, "botvisor_bots", state="running") == 2
    assert value(samples, "botvisor_bots", state="failed") == 1
    assert value(samples, "botvisor_bots", state="stopped") == 1
    assert value(samples, "botvisor_bots", state="backoff") == 0
    assert value(samples, "botvisor_bot_restarts_total", bot="killed") == 1
    assert value(samples, "botvisor_bot_restarts_total", bot="live") == 0

    upserts = value(samples, "botvisor_bot_events_total", bot="live", type="message-upsert")
    assert upserts >= messages_before
    assert value(samples, "botvisor_bot_events_total", bot="live", type="connection-update") >= 2  # connecting, open
    assert value(samples, "botvisor_bot_events_total", bot="idle", type="message-upsert") == 0
    assert value(samples, "botvisor_bot_events_lost_total", bot="live") == 0
    assert value(samples, "botvisor_bot_connection_attempts", bot="live") == 0  # open: the streak is over

    assert 0 <= value(samples, "botvisor_bot_heartbeat_age_seconds", bot="live") < 0.3  # 3 x heartbeat_interval
    assert ("botvisor_bot_heartbeat_age_seconds", frozenset({("bot", "idle")})) not in samples
    rss = value(samples, "botvisor_bot_resident_memory_bytes", bot="live")
    actual = psutil.Process(live.pid).memory_info().rss
    assert 10 << 20 < rss and 0.5 < rss / actual < 2, (rss, actual)
    times = psutil.Process(live.pid).cpu_times()
    assert 0 <= value(samples, "botvisor_bot_cpu_seconds_total", bot="live") <= times.user + times.system
    assert ("botvisor_bot_resident_memory_bytes", frozenset({("bot", "banned")})) not in samples

    assert 0 <= value(samples, "botvisor_supervisor_loop_lag_seconds") < 0.5
    assert value(samples, "botvisor_supervisor_messages_rejected_total") == 0
    assert value(samples, "botvisor_supervisor_process_resident_memory_bytes") > 0

    # read live at scrape time: a later scrape sees later counts
    tap.wait_for(lambda m: isinstance(m, Event) and m.bot == "live" and m.type is EventType.MESSAGE_UPSERT,
                 history=False, what="one more message")
    again = scrape(port)
    assert value(again, "botvisor_bot_events_total", bot="live", type="message-upsert") > upserts


def test_metrics_listen_is_checked_when_the_config_is_loaded(tmp_path: Path):
    assert split_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert split_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", ":9464", "localhost:http"):
        with pytest.raises(ConfigError, match=r"metrics\.listen"):
            parse_config({"metrics": {"listen": bad}}, tmp_path / "botvisor.toml")


def test_a_reload_that_changes_metrics_is_refused_and_the_endpoint_keeps_serving(fleet_factory, launch):
    port = free_port()
    fleet = fleet_factory(["b1"])
    fleet.extra = f'[metrics]\nlisten = "127.0.0.1:{port}"\n'
    fleet.write()
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b1", what="b1's hello")
    fleet.extra = f'[metrics]\nlisten = "127.0.0.1:{free_port()}"\n'
    fleet.write()
    service.signal(signal.SIGHUP)
    notice = tap.wait_for(lambda m: isinstance(m, Notice) and m.level == "error", what="the refusal")
    assert "metrics" in notice.message and "restart" in notice.message, notice.message
    assert value(scrape(port), "botvisor_bots", state="running") == 1
