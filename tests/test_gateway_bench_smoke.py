"""`python -m bench webhooks` runs end to end (tiny), loses nothing at a low rate, and leaves
no process behind."""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest

from .harness import REPO

pytestmark = pytest.mark.slow


def test_the_webhooks_bench_runs_and_loses_nothing_at_a_low_rate(tmp_path):
    out = tmp_path / "r.json"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = subprocess.run([sys.executable, "-m", "bench", "webhooks", "--bots", "3", "--rates", "30", "--syncs", "full,normal",
                          "--window", "2", "--warmup", "1", "--drain", "5", "--max-from", "0",
                          "--status-bots", "3", "--status-requests", "10", "--ready-starts", "2", "--ready-bots", "3",
                          "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    results = json.loads(out.read_text())
    full, normal = results["delivery"]
    assert (full["outbox_sync"], normal["outbox_sync"]) == ("full", "normal")
    for delivery in (full, normal):
        assert delivery["events"] > 0 and delivery["lost"] == 0, delivery
        assert delivery["gateway_cpu_us_per_event"] > 0 and delivery["attempts"].get("2xx", 0) >= delivery["events"]
    (status,) = results["status"]
    assert status["rest_p50_ms"] > 0 and status["control_p50_ms"] > 0
    assert results["ready"]["starts"] == 2 and results["ready"]["median_ms"] > 0
    assert "Gateway: tap to webhook" in run.stdout and "Gateway: start to ready" in run.stdout
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, f"processes left behind: {left}"
