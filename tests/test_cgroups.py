"""The supervisor's CPU share (supervisor/cgroups.py): where its groups go, and that it degrades
to a clear reason. Its effect (share, throughput, status round trip) is measured in bench/share.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from supervisor import cgroups

from .cluster_fixtures import database, postgres  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(cgroups, "_share", None)
    monkeypatch.delenv(cgroups.ENV, raising=False)
    yield
    cgroups.release()


def _fake_v2(tmp_path: Path, monkeypatch, controllers: str = "cpu memory pids", own: str = "/system.slice/b.service"):
    """A cgroup2 tree as plain files, as systemd delegates it to the unit."""
    base = tmp_path / own.lstrip("/")
    base.mkdir(parents=True)
    (base / "cgroup.controllers").write_text(controllers + "\n")
    (base / "cgroup.subtree_control").write_text("\n")
    (base / "cgroup.procs").write_text(f"{os.getpid()}\n")
    monkeypatch.setattr(cgroups, "V2_ROOT", tmp_path)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(f"0::{own}\n")
    monkeypatch.setattr(cgroups, "PROC_CGROUP", proc)
    # mkdir of a real cgroup creates its files; here the children get theirs as they are written
    return base


def test_v2_delegated_moves_the_supervisor_into_a_leaf_and_weights_both_groups(tmp_path, monkeypatch):
    base = _fake_v2(tmp_path, monkeypatch)
    share = cgroups.setup("prod")
    assert share.version == 2
    assert share.supervisor == base / "supervisor" and share.workers == base / "workers"
    assert (base / "supervisor" / "cgroup.procs").read_text() == str(os.getpid())
    assert (base / "cgroup.subtree_control").read_text() == "+cpu"
    assert (base / "supervisor" / "cpu.weight").read_text() == str(cgroups.SUPERVISOR_WEIGHT)
    assert (base / "workers" / "cpu.weight").read_text() == str(cgroups.WORKERS_WEIGHT)
    assert cgroups.SUPERVISOR_WEIGHT >= 50 * cgroups.WORKERS_WEIGHT  # the point of it
    cgroups.place(4242)
    assert (base / "workers" / "cgroup.procs").read_text() == "4242"


def test_v2_without_the_cpu_controller_says_it_is_not_delegated(tmp_path, monkeypatch):
    _fake_v2(tmp_path, monkeypatch, controllers="memory pids")
    monkeypatch.setattr(cgroups, "MOUNTINFO", tmp_path / "no-mounts")
    (tmp_path / "no-mounts").write_text("")
    with pytest.raises(cgroups.Unavailable, match=r"cpu controller is not available .*not delegated"):
        cgroups.setup("prod")
    assert cgroups.current() is None
    cgroups.place(4242)  # no share: a no-op, never an error


def test_v2_refuses_to_move_processes_it_did_not_start(tmp_path, monkeypatch):
    base = _fake_v2(tmp_path, monkeypatch)
    (base / "cgroup.procs").write_text(f"{os.getpid()}\n1\n")
    monkeypatch.setattr(cgroups, "MOUNTINFO", tmp_path / "no-mounts")
    (tmp_path / "no-mounts").write_text("")
    with pytest.raises(cgroups.Unavailable, match=r"holds other processes \(1\)"):
        cgroups.setup("prod")


def test_turned_off_by_the_environment(monkeypatch):
    monkeypatch.setenv(cgroups.ENV, "off")
    with pytest.raises(cgroups.Unavailable, match="turned off"):
        cgroups.setup("prod")


def test_parsing_proc_cgroup_and_mountinfo():
    entries = cgroups._own_cgroups("12:cpu,cpuacct:/a/b\n4:memory:/m\n0::/unified\n")
    assert entries["cpu"] == "/a/b" and entries["cpuacct"] == "/a/b" and entries[""] == "/unified"
    mountinfo = ("30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:10 - cgroup cgroup rw,memory\n"
                 "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpu,cpuacct\n")
    assert cgroups._v1_cpu_mount(mountinfo) == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert cgroups._v1_cpu_mount("") is None


V1 = cgroups._v1_cpu_mount(cgroups.MOUNTINFO.read_text())
V1_WRITABLE = V1 is not None and os.access(V1 / cgroups._own_cgroups(cgroups.PROC_CGROUP.read_text()).get(
    "cpu", "/").lstrip("/"), os.W_OK)


NEEDS_V1 = pytest.mark.skipif(not V1_WRITABLE, reason="needs a writable cgroup v1 cpu hierarchy (root on a v1 host)")


@NEEDS_V1
def test_v1_real_groups_hold_the_supervisor_and_a_worker_and_are_removed_at_release():
    share = cgroups.setup("cgtest")
    assert share.version == 1 and share.made
    child = subprocess.Popen(["sleep", "30"])
    try:
        cgroups.place(child.pid)
        assert str(child.pid) in (share.workers / "cgroup.procs").read_text().split()
        assert str(os.getpid()) in (share.supervisor / "cgroup.procs").read_text().split()
        assert int((share.supervisor / "cpu.shares").read_text()) >= 10 * int((share.workers / "cpu.shares").read_text())
    finally:
        child.kill()
        child.wait()
    made = share.made
    cgroups.release()
    assert not any(group.exists() for group in made)
    assert str(os.getpid()) in (share.origin / "cgroup.procs").read_text().split()


@NEEDS_V1
def test_v1_empty_groups_of_a_dead_supervisor_are_removed_and_a_live_ones_kept():
    # any server's: a killed supervisor of another configuration leaves its groups too
    origin = cgroups._v1_cpu_mount(cgroups.MOUNTINFO.read_text()) / cgroups._own_cgroups(
        cgroups.PROC_CGROUP.read_text())["cpu"].lstrip("/")
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = origin / f"botvisor-other-{dead.pid}-workers"
    live = origin / f"botvisor-cgtest-{os.getppid()}-workers"
    foreign = origin / f"botvisor-other-{dead.pid}-cache"  # not a name botvisor gives: not ours
    for group in (stale, live, foreign):
        group.mkdir(exist_ok=True)
    try:
        cgroups.setup("cgtest")
        assert not stale.exists() and live.exists() and foreign.exists()
    finally:
        for group in (stale, live, foreign):
            if group.exists():
                group.rmdir()


def _groups_of(pid: int) -> str:
    """The v1 cpu cgroup of ``pid``."""
    return cgroups._own_cgroups(Path(f"/proc/{pid}/cgroup").read_text())["cpu"]


def _helpers(supervisor_pid: int) -> dict[str, int]:
    """The supervisor's forkserver and multiprocess resource tracker, by their command lines."""
    import psutil

    found = {}
    for child in psutil.Process(supervisor_pid).children():
        line = " ".join(child.cmdline())
        if "forkserver" in line:
            found["forkserver"] = child.pid
        elif "resource_tracker" in line:
            found["resource tracker"] = child.pid
    return found


@NEEDS_V1
def test_v1_a_real_supervisor_keeps_its_forkserver_and_leaves_no_group_behind_at_a_stop(fleet_factory, launch):
    import signal

    from protocol import Hello

    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    hello = tap.wait_for(lambda m: isinstance(m, Hello), what="b1's hello")
    origin = cgroups._v1_cpu_mount(cgroups.MOUNTINFO.read_text()) / _groups_of(os.getpid()).lstrip("/")
    supervisor = origin / f"botvisor-{fleet.server}-{service.pid}-supervisor"
    workers = origin / f"botvisor-{fleet.server}-{service.pid}-workers"
    helpers = _helpers(service.pid)
    assert set(helpers) == {"forkserver", "resource tracker"}
    held = (supervisor / "cgroup.procs").read_text().split()
    assert {str(service.pid), *map(str, helpers.values())} <= set(held), "a replacement is forked at the supervisor's share"
    assert (workers / "cgroup.procs").read_text().split() == [str(hello.pid)]
    service.signal(signal.SIGTERM)
    assert service.wait(20) == 0
    # the resource tracker outlives the supervisor by a moment: its group went with the supervisor
    assert not supervisor.exists() and not workers.exists(), service.log()[-2000:]
    assert "left " not in service.log()


@NEEDS_V1
def test_v1_a_cluster_shard_starts_its_forkserver_in_the_supervisors_group(tmp_path, database):
    """A shard starts its forkserver before its first bot (a handover's downtime): after the
    supervisor has its group, or the forkserver ran at an ordinary process's share (v1) and made
    the delegated group refuse the supervisor (v2: "holds other processes")."""
    from bench.shards import LocalCluster

    cluster = LocalCluster(tmp_path, database, ["c1"])
    try:
        shard = cluster.start(0, 1)
        cluster.wait(lambda: cluster.running(0) == {"c1"}, 60, "c1 running")
        assert shard.proc is not None
        group = f"botvisor-{cluster.server}-{shard.proc.pid}-supervisor"
        assert _groups_of(shard.proc.pid).endswith("/" + group)
        helpers = _helpers(shard.proc.pid)
        assert "forkserver" in helpers and _groups_of(helpers["forkserver"]) == _groups_of(shard.proc.pid)
    finally:
        cluster.close()
