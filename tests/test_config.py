"""The TOML configuration: defaults, inheritance, and bad files refused with key and reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocol.config import ConfigError, load_config

from .harness import REPO

EXAMPLE = REPO / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "botvisor.toml"
    path.write_text(text)
    return path


def test_the_example_config_loads_with_three_simulated_bots():
    config = load_config(EXAMPLE)
    assert [b.id for b in config.bots] == ["support", "sales", "alerts"]
    assert {b.backend for b in config.bots} == {"simulated"}
    assert config.bot_dir("sales") == REPO / "auth" / "example" / "bot_sales"


def test_defaults_and_per_bot_overrides(tmp_path):
    config = load_config(write(tmp_path, """
[supervisor]
server_name = "prod"
heartbeat_interval = 10
[supervisor.backoff]
max = 30
[[bots]]
id = "a"
[[bots]]
id = "b"
heartbeat_interval = 2
heartbeat_timeout = 5
[bots.backoff]
initial = 0.1
"""))
    a, b = config.bots
    assert a.heartbeat_interval == 10 and a.stale_after == 30, "timeout defaults to 3 x interval"
    assert a.max_reconnect_attempts == 10 and a.event_history == 100 and a.stop_timeout == 10
    assert b.heartbeat_interval == 2 and b.stale_after == 5
    assert a.backoff.max == 30 and a.backoff.initial == 0.5
    assert b.backoff.max == 30 and b.backoff.initial == 0.1, "bot backoff overrides key by key"
    assert config.endpoint("events") == f"ipc://{tmp_path / 'run' / 'events.sock'}"
    assert config.auth_root == tmp_path / "auth", "paths are relative to the file"


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('[[bots]]\nid = "../x"\n', "bots[0].id", "not a valid bot id"),
        ('[[bots]]\nid = ""\n', "bots[0].id", "not a valid bot id"),
        ('[[bots]]\nid = "' + "a" * 65 + '"\n', "bots[0].id", "not a valid bot id"),
        ('[[bots]]\nid = "a"\n[[bots]]\nid = "a"\n', "bots[1].id", "duplicate bot id 'a'"),
        ('[[bots]]\nbackend = "simulated"\n', "bots[0].id", "missing required key"),
        ('[[bots]]\nid = "a"\nbackend = "baileys"\n', "bots[0] (a).backend", "must be one of 'simulated', 'neonize'"),
        ('[supervisor]\nheartbeat_interval = "often"\n', "supervisor.heartbeat_interval", "must be a number"),
        ('[supervisor]\nheartbeat_interval = -1\n', "supervisor.heartbeat_interval", "must be at least"),
        ('[supervisor]\nhearbeat_interval = 5\n', "supervisor.hearbeat_interval", "unknown key"),
        ('[supervisor]\nserver_name = "a.b"\n', "supervisor.server_name", "not a valid name"),
        ('[supervisor.backoff]\nfactor = 0.5\n', "supervisor.backoff.factor", "must be at least 1"),
        ('[supervisor.backoff]\nmax_restarts = 2.5\n', "supervisor.backoff.max_restarts", "must be an integer"),
        ('[[bots]]\nid = "a"\n[bots.simulated]\ncrash_afterr = 1\n', "bots[0] (a).simulated.crash_afterr",
         "unknown key"),
        ('[[bots]]\nid = "a"\nheartbeat_interval = 10\nheartbeat_timeout = 5\n', "bots[0] (a).heartbeat_timeout",
         "must exceed heartbeat_interval"),
        ('[endpoints]\nevents = "udp://x"\n', "endpoints.events", "not an ipc:// or tcp://"),
        ('[endpoints]\nevents = "tcp://127.0.0.1:5555"\n', "endpoints.events", "ipc:// only"),
        ('[supervisor]\nrun_dir = "' + "r" * 120 + '"\n', "endpoints.events", "over the 100 a unix socket allows"),
        ('[extra]\nx = 1\n', "extra", "unknown key"),
        ('bots = 3\n', "bots", "must be a list"),
    ],
)
def test_bad_values_are_refused_naming_file_key_and_reason(tmp_path, text, key, reason):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(path) in str(info.value)


def test_malformed_toml_and_missing_files_are_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2"):
        load_config(write(tmp_path, "[supervisor]\nserver_name = \n"))
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.toml")


def botvisor(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=env)


def test_check_config_prints_a_summary_and_exits_0():
    result = botvisor("check-config", "-c", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout and "support" in result.stdout and "ipc://" in result.stdout


def test_check_config_and_run_exit_78_on_a_bad_file_and_start_nothing(tmp_path):
    path = write(tmp_path, '[supervisor]\nrun_dir = "run"\n[[bots]]\nid = "../x"\n')
    check = botvisor("check-config", "-c", str(path))
    assert check.returncode == 78
    assert "bots[0].id" in check.stderr and "../x" in check.stderr
    run = botvisor("run", "-c", str(path))
    assert run.returncode == 78 and "bots[0].id" in run.stderr
    assert not (tmp_path / "run").exists(), "nothing may start on a bad configuration"


def test_the_config_file_is_found_from_botvisor_config_or_the_current_directory(tmp_path):
    import os

    path = write(tmp_path, '[[bots]]\nid = "envbot"\n')
    result = botvisor("check-config", env={**os.environ, "BOTVISOR_CONFIG": str(path)})
    assert result.returncode == 0 and "envbot" in result.stdout
    result = botvisor("check-config", cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0 and "envbot" in result.stdout
    result = botvisor("check-config", cwd=tmp_path / "..", env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 78 and "no such file" in result.stderr
