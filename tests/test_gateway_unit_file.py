"""deploy/botvisor-gateway.service: a unit of its own that neither stops with the supervisor
nor stops it, restarts in well under a second, and that systemd accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import REPO
from .test_systemd_unit import parse_unit, seconds

UNIT = REPO / "deploy" / "botvisor-gateway.service"


def test_the_gateway_unit_is_independent_of_the_supervisor_and_restarts_fast():
    unit = parse_unit(UNIT)
    one = {key: values[-1] for key, values in unit["Service"].items()}
    assert one["ExecStart"].endswith("botvisor gateway -c /etc/botvisor/botvisor.toml")
    assert one["Restart"] == "always" and seconds(one["RestartSec"]) < 1
    assert one["RestartPreventExitStatus"] == "78"
    assert "botvisor.service" in unit["Unit"]["After"][0]
    for binding in ("BindsTo", "PartOf", "Requisite", "Requires"):
        assert binding not in unit["Unit"], f"{binding} would tie the gateway's life to the supervisor's"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_gateway_unit(tmp_path: Path):
    botvisor = Path(sys.executable).with_name("botvisor")
    assert botvisor.exists(), "install the package (pip install -e .) so the ExecStart binary exists"
    unit = tmp_path / "botvisor-gateway.service"
    unit.write_text(UNIT.read_text().replace("/opt/botvisor/venv/bin/botvisor", str(botvisor)))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert result.returncode == 0 and not complaints, complaints
