"""The benchmark suite cannot rot: a seconds-long run of ``python -m bench`` at N = 5.

It runs the peers too when their venv can be created (bench/.peers/venv), and checks that
the bench leaves no process behind, also when it is interrupted with Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from bench import peers

REPO = Path(__file__).resolve().parent.parent

SMOKE = ["--sizes", "5", "--kills", "2", "--idle", "1", "--fast-heartbeat", "0.2", "--stop-timeout", "0.5",
         "--peer-hang-bound", "0.5", "--event-seconds", "1", "--warmup", "0.5", "--max-rate", "2000", "--settle", "0.2",
         "--profile-seconds", "0", "--neonize-n", "0", "--seed", "1", "--apps-seconds", "0"]


def processes_under(workdir: Path) -> list[psutil.Process]:
    """Processes whose command line mentions the bench's scratch directory (its configs live there)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(str(workdir) in part for part in proc.info["cmdline"] or []) and proc.status() != "zombie":
                found.append(proc)
        except psutil.Error:
            pass
    return found


def kill_leftovers(workdir: Path) -> list[int]:
    left = processes_under(workdir)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return [p.pid for p in left]


@pytest.fixture
def workdir() -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="bvs-", dir="/tmp"))  # short: ipc socket paths
    yield path
    kill_leftovers(path)
    import shutil

    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_smoke_run_measures_every_scenario_and_leaves_nothing_behind(workdir: Path, tmp_path: Path) -> None:
    with_peers, why = peers.ensure()
    out, raw = tmp_path / "RESULTS.md", tmp_path / "results.json"
    args = SMOKE + ["--workdir", str(workdir), "--out", str(out), "--json", str(raw)]
    args += ["--peers", "supervisord,circus-cd1"] if with_peers else ["--no-peers"]
    run = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=110)
    assert run.returncode == 0, run.stderr[-3000:]
    assert kill_leftovers(workdir) == [], "the bench left processes running"

    results = json.loads(raw.read_text())
    size = results["sizes"]["5"]
    bv = size["supervision"]["botvisor"]
    assert bv["cold"]["all_hellos"] > 0
    assert bv["crash"]["missing"] == 0 and bv["crash"]["pid_median"] > 0 and bv["crash"]["hello_median"] > 0
    assert bv["mass"]["all_pids"] > 0
    assert bv["shutdown"]["gone"] is not None
    assert size["botvisor_fast"]["hang"]["replaced"] is not None  # botvisor does notice a hung worker
    assert size["event_path"]["latency"]["events"] > 0 and size["event_path"]["ceiling"]["rate"] > 0
    assert size["event_path"]["flat"]["gaps"] == 0 and size["event_path"]["flat"]["offered"] == 2000
    text = out.read_text()
    assert "## Targets" in text and "## Machine" in text and "| N = 5 | botvisor" in text
    if with_peers:
        for name in ("supervisord", "circus cd=1"):
            assert size["supervision"][name]["crash"]["pid_median"] > 0, name
            assert size["supervision"][name]["hang"]["replaced"] is None  # they never notice a hang
        assert "| N = 5 | botvisor | supervisord | circus cd=1 |" in text
    else:
        assert "Peers were not measured" in text, why


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_kills_everything_the_bench_started(workdir: Path, tmp_path: Path) -> None:
    args = SMOKE + ["--workdir", str(workdir), "--out", str(tmp_path / "RESULTS.md"), "--no-peers",
                    "--idle", "30"]
    bench = subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # wait until it is mid-run: a fleet up, idling
            line = bench.stderr.readline()
            seen.append(line)
            if "idle" in line:
                break
        assert any("idle" in line for line in seen), "".join(seen)
        workers = psutil.Process(bench.pid).children(recursive=True)  # supervisor, forkserver, workers
        assert len(workers) >= 5, "the bench had started no fleet by its idle phase"
        bench.send_signal(signal.SIGINT)
        assert bench.wait(20) == 130
        time.sleep(0.2)
        def running(p: psutil.Process) -> bool:
            try:
                return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                return False

        assert [p.pid for p in workers if running(p)] == []
        assert kill_leftovers(workdir) == []
    finally:
        if bench.poll() is None:
            os.kill(bench.pid, signal.SIGKILL)
            bench.wait(5)
