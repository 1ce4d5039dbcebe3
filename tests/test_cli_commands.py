"""`botvisor status|start|stop|restart|reload|history|send|logout` as an operator runs them:
real processes against a real supervisor with simulated bots; output and exit codes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from protocol import ContainerState, Event, EventType, Hello, StateChange

from .harness import REPO


def cli(fleet, command: str, *args: str, env: dict[str, str] | None = None, config: bool = True,
        timeout: float = 30) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "supervisor.cli", command, *(["-c", str(fleet.config_path)] if config else []),
            *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def state(tap, bot, wanted: ContainerState, what: str = ""):
    return tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == bot and m.state is wanted,
                        what=what or f"{bot} {wanted}", history=False)


def online(tap, bot):
    tap.wait_for(lambda m: isinstance(m, Event) and m.bot == bot and m.type is EventType.CONNECTION_UPDATE
                 and m.data.connection == "open", what=f"{bot} online")


def test_status_prints_every_column_and_json_and_exits_0_when_all_is_well(fleet_factory, launch):
    fleet = fleet_factory(["b1", {"id": "idle", "autostart": False}])
    service, tap = launch(fleet)
    online(tap, "b1")
    tap.wait_for(lambda m: m.bot == "b1" and type(m).__name__ == "Heartbeat", what="a heartbeat")
    done = cli(fleet, "status")
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "BOT" in line).split()
    assert header == ["BOT", "STATE", "STATUS", "PID", "UPTIME", "RESTARTS", "HEARTBEAT", "ATTEMPTS", "EVENTS",
                      "LOST", "RSS", "CPU", "REASON"]
    b1 = next(line for line in done.stdout.splitlines() if line.split()[:1] == ["b1"]).split()
    assert b1[1:3] == ["running", "online"] and int(b1[3]) == tap.wait_for(lambda m: isinstance(m, Hello)).pid
    assert "\x1b[" not in done.stdout, "no colour codes when stdout is not a terminal"
    as_json = json.loads(cli(fleet, "status", "--json", "idle").stdout)
    assert [b["bot_id"] for b in as_json["bots"]] == ["idle"]
    assert as_json["bots"][0]["container_state"] == "stopped"


def test_status_exits_1_when_a_selected_bot_failed_and_0_for_the_others(fleet_factory, launch):
    fleet = fleet_factory(["ok", {"id": "doomed", "simulated": {"logout_after": 0.1}}])
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "doomed" and m.state is ContainerState.FAILED,
                 what="doomed failed")
    online(tap, "ok")
    everything = cli(fleet, "status")
    assert everything.returncode == 1
    assert "failed" in next(line for line in everything.stdout.splitlines() if line.startswith(" doomed")
                            or line.startswith("doomed"))
    assert cli(fleet, "status", "ok").returncode == 0
    assert cli(fleet, "status", "doomed", "--json").returncode == 1
    unknown = cli(fleet, "status", "nope")
    assert unknown.returncode == 1 and "no such bot: nope" in unknown.stderr


def test_start_stop_restart_by_name_and_all(fleet_factory, launch):
    fleet = fleet_factory(["b1", "b2"])
    service, tap = launch(fleet)
    first = {bot: tap.wait_for(lambda m, bot=bot: isinstance(m, Hello) and m.bot == bot).pid for bot in ("b1", "b2")}
    stopped = cli(fleet, "stop", "b1")
    assert stopped.returncode == 0 and "b1: stop requested, running -> stopping" in stopped.stdout
    state(tap, "b1", ContainerState.STOPPED)
    again = cli(fleet, "stop", "b1")
    assert again.returncode == 0 and "already stopped" in again.stdout
    started = cli(fleet, "start", "b1")
    assert started.returncode == 0 and "stopped -> initializing" in started.stdout
    state(tap, "b1", ContainerState.RUNNING)
    restarted = cli(fleet, "restart", "--all")
    assert restarted.returncode == 0 and "b1:" in restarted.stdout and "b2:" in restarted.stdout
    hello = tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b2" and m.pid != first["b2"],
                         what="b2 restarted")
    assert hello.seq == 0
    assert cli(fleet, "stop").returncode == 2, "no bot and no --all is a usage error"
    unknown = cli(fleet, "start", "b1", "ghost")
    assert unknown.returncode == 1 and "no such bot: ghost" in unknown.stderr


def test_reload_prints_what_was_applied_and_refuses_a_bad_file(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    fleet.bots.append({"id": "b2", "backend": "simulated"})
    fleet.write()
    applied = cli(fleet, "reload")
    assert applied.returncode == 0 and "1 added" in applied.stdout
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "b2", what="the added bot's hello")
    fleet.config_path.write_text("[supervisor]\nheartbeat_interval = 'often'\n")
    # the file no longer loads, so point the CLI at a copy that does: the supervisor reads its own path
    good = fleet.root / "client.toml"
    good.write_text(f"[supervisor]\nserver_name = 'test'\nrun_dir = '{fleet.run_dir}'\n")
    refused = subprocess.run([sys.executable, "-m", "supervisor.cli", "reload", "-c", str(good)], cwd=REPO,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert "reload refused" in refused.stderr and "heartbeat_interval" in refused.stderr


def test_history_shows_the_last_events(fleet_factory, launch):
    fleet = fleet_factory([{"id": "b1", "simulated": {"message_rate": 40.0}}])
    service, tap = launch(fleet)
    for _ in range(4):
        tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT, history=False)
    shown = cli(fleet, "history", "b1", "-n", "3")
    assert shown.returncode == 0
    assert len(shown.stdout.splitlines()) == 3 and "message-upsert" in shown.stdout
    as_json = [json.loads(line) for line in cli(fleet, "history", "b1", "--json", "-n", "2").stdout.splitlines()]
    assert len(as_json) == 2 and {"type", "data", "timestamp"} <= set(as_json[0])
    assert cli(fleet, "history", "ghost").returncode == 1


def test_send_and_logout_go_through_the_worker(fleet_factory, launch):
    fleet = fleet_factory([{"id": "b1", "messages_per_minute": 0.01}, {"id": "off", "autostart": False}])
    service, tap = launch(fleet)
    online(tap, "b1")
    sent = cli(fleet, "send", "b1", "+15550001111", "hi from the cli")
    assert sent.returncode == 0, sent.stderr
    assert "b1: sent message SIMOUT" in sent.stdout and "15550001111@s.whatsapp.net" in sent.stdout
    echoed = tap.wait_for(lambda m: isinstance(m, Event) and m.type is EventType.MESSAGE_UPSERT and m.data.from_me,
                          what="the sent message")
    assert echoed.data.text == "hi from the cli" and echoed.data.chat == "15550001111@s.whatsapp.net"
    held = cli(fleet, "send", "b1", "15550002222", "over the rate limit")
    assert held.returncode == 0, held.stderr
    assert re.search(r"^b1: queued send [0-9a-f]{16} to 15550002222@s.whatsapp.net \(position 1, expected in "
                     r"[0-9.]+ s; message id SIMOUT[0-9]{14}\)$", held.stdout, re.M), held.stdout
    not_running = cli(fleet, "send", "off", "15550001111", "hi")
    assert not_running.returncode == 1 and "off is stopped, not running" in not_running.stderr
    unknown = cli(fleet, "send", "ghost", "15550001111", "hi")
    assert unknown.returncode == 1 and "no bot 'ghost'" in unknown.stderr
    out = cli(fleet, "logout", "b1")
    assert out.returncode == 0 and out.stdout.startswith("b1: logged out")
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is ContainerState.FAILED,
                 what="b1 failed after logout")
    assert cli(fleet, "logout", "b1").returncode == 1


def test_every_command_says_when_no_supervisor_is_running(fleet_factory):
    fleet = fleet_factory(["b1"])
    for command, args in [("status", ()), ("start", ("b1",)), ("stop", ("--all",)), ("restart", ("b1",)),
                          ("reload", ()), ("history", ("b1",)), ("send", ("b1", "1555", "x")), ("logout", ("b1",))]:
        done = cli(fleet, command, *args)
        assert done.returncode == 3, (command, done.stderr)
        assert "no supervisor is running" in done.stderr and str(fleet.config_path) in done.stderr, command


def test_the_config_comes_from_botvisor_config_when_no_c_is_given(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    done = cli(fleet, "status", "--json", config=False, env={"BOTVISOR_CONFIG": str(fleet.config_path)})
    assert done.returncode == 0 and json.loads(done.stdout)["pid"] == service.pid


def test_status_is_coloured_on_a_terminal(fleet_factory, launch):
    from .terminal import Terminal, botvisor

    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    online(tap, "b1")
    term = Terminal(botvisor("status", "-c", str(fleet.config_path)))
    try:
        assert term.wait_exit(30) == 0
        assert "running" in term.text and "\x1b[32m" in term.text, "running in green"
    finally:
        term.close()
