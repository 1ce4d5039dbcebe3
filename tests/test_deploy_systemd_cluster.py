"""deploy/systemd-cluster/: the drop-in that makes a plain host one shard holds to the lease timings."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.cluster_config import ClusterSettings
from protocol.config import SupervisorSettings

from .harness import REPO
from .test_systemd_unit import NEWER_KEYS, UNIT, parse_unit, seconds

DROPIN = REPO / "deploy" / "systemd-cluster" / "cluster.conf"


def test_the_drop_in_fits_the_lease_timings() -> None:
    service = {k: v[-1] for k, v in parse_unit(DROPIN)["Service"].items()}
    lease = ClusterSettings()
    # a wedged loop is killed, with its workers, before a lease it can no longer renew could lapse
    assert seconds(service["WatchdogSec"]) <= lease.lease_ttl - lease.renew_interval - lease.stop_margin
    assert seconds(service["WatchdogSec"]) >= 2, "the loop pings at half the watchdog interval"
    assert seconds(service["TimeoutStopSec"]) > SupervisorSettings().stop_timeout + 30, "room for the handovers"
    assert service["EnvironmentFile"] == "/etc/botvisor/cluster.env"
    env = (DROPIN.parent / "cluster.env.example").read_text()
    assert re.search(r"^BOTVISOR_SHARD=\d+$", env, re.M) and re.search(r"^BOTVISOR_DATABASE=postgresql://", env, re.M)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit_with_the_drop_in(tmp_path: Path) -> None:
    botvisor = Path(sys.executable).with_name("botvisor")
    unit = tmp_path / "botvisor.service"
    unit.write_text(UNIT.read_text().replace("/opt/botvisor/venv/bin/botvisor", str(botvisor)))
    dropin = tmp_path / "botvisor.service.d"
    dropin.mkdir()
    (dropin / "cluster.conf").write_text(DROPIN.read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path, env={"SYSTEMD_UNIT_PATH": f"{tmp_path}:"})
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()
                  and not any(f"Unknown key '{k}'" in line for k in NEWER_KEYS)]
    assert result.returncode == 0 and not complaints, complaints
