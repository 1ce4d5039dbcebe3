"""deploy/botvisor.service: the keys the service relies on, and systemd's own verdict when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protocol import exit_codes
from protocol.config import SupervisorSettings, load_config

from .harness import REPO

UNIT = REPO / "deploy" / "botvisor.service"
CONFIG = REPO / "deploy" / "botvisor.toml"
#: keys older systemd versions do not know (RestartSteps, RestartMaxDelaySec: systemd 254)
NEWER_KEYS = ("RestartSteps", "RestartMaxDelaySec")


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path}: not a key=value line: {raw!r}"
        key, value = (part.strip() for part in line.split("=", 1))
        current.setdefault(key, []).append(value)
    return sections


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert match and match.group(2) in units, f"cannot read the time span {value!r}"
    return float(match.group(1)) * units[match.group(2)]


def test_the_unit_sets_what_the_service_relies_on():
    service = parse_unit(UNIT)["Service"]
    one = {key: values[-1] for key, values in service.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert seconds(one["WatchdogSec"]) >= 2, "the loop polls at most every second; pings come at half of it"
    assert one["Restart"] == "on-failure"
    assert int(one["RestartSteps"]) > 0 and seconds(one["RestartMaxDelaySec"]) > seconds(one["RestartSec"])
    assert str(exit_codes.CONFIG_ERROR) in one["RestartPreventExitStatus"].split(), "a bad file must not loop"
    # SIGTERM to the supervisor only, SIGKILL to the whole cgroup after (deploy/README.md: why not control-group)
    assert one["KillMode"] == "mixed" and one.get("SendSIGKILL", "yes") == "yes"
    assert seconds(one["TimeoutStopSec"]) > SupervisorSettings().stop_timeout
    assert one["User"] not in ("root", "0") and one["Group"] not in ("root", "0")
    assert one["NoNewPrivileges"] == "yes" and one["ProtectSystem"] == "strict" and one["PrivateTmp"] == "yes"
    assert re.fullmatch(r"\S+/botvisor run -c \S+\.toml", one["ExecStart"]), one["ExecStart"]
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"

    # the shipped config writes only where the unit lets it
    writable = [Path(p) for p in one["ReadWritePaths"].split()]
    config = load_config(CONFIG)
    for what, path in (("auth_dir", config.auth_root), ("run_dir", config.run_dir)):
        assert any(path == w or w in path.parents for w in writable), f"{what} {path} is not in ReadWritePaths"
    assert Path("/var/lib") / one["StateDirectory"] in writable
    assert Path("/run") / one["RuntimeDirectory"] in writable
    assert Path("/var/log") / one["LogsDirectory"] in writable
    assert config.run_dir == Path("/run") / one["RuntimeDirectory"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path):
    botvisor = Path(sys.executable).with_name("botvisor")
    assert botvisor.exists(), "install the package (pip install -e .) so the ExecStart binary exists"
    unit = tmp_path / "botvisor.service"  # the same unit, pointed at this checkout's binary
    unit.write_text(UNIT.read_text().replace("/opt/botvisor/venv/bin/botvisor", str(botvisor)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    version = int(re.search(r"systemd (\d+)", subprocess.run(["systemd-analyze", "--version"], capture_output=True,
                                                             text=True).stdout).group(1))
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    if version < 254:
        complaints = [c for c in complaints if not any(f"Unknown key '{k}'" in c for k in NEWER_KEYS)]
    assert result.returncode == 0 and not complaints, complaints
