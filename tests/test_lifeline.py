"""No process of the fleet outlives its owner, however the owner dies (issue 14, defects 1 and 2).

A worker that is stopped (SIGSTOP) or hung cannot run the code that watches its supervisor, so
these tests prove what the kernel delivers: the forkserver sees the supervisor go, the workers'
parent-death signal follows, and the processes a worker started go with its process group.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil

from protocol import ContainerState as S
from protocol import Event, EventType, Heartbeat, StateChange

from .harness import REPO, alive, kill_pid, wait_until
from .test_no_orphans import hellos


def fleet_tree(service) -> set[int]:
    """The supervisor's descendants now: forkserver, resource tracker, workers and their children."""
    return {p.pid for p in service.descendants()}


def sigkill_supervisor(service, tree: set[int], within: float = 2.0) -> None:
    """SIGKILL the supervisor: every process of ``tree`` must be gone ``within`` seconds."""
    os.kill(service.pid, signal.SIGKILL)
    service.wait(5)
    killed_at = time.monotonic()
    wait_until(lambda: not any(alive(p) for p in tree), timeout=5,
               what=f"every process of the fleet to die: {[p for p in tree if alive(p)]}")
    assert time.monotonic() - killed_at < within


def online(tap, bot: str) -> None:
    tap.wait_for(lambda m: isinstance(m, Event) and m.bot == bot and m.type is EventType.CONNECTION_UPDATE
                 and m.data.connection == "open", timeout=15, what=f"{bot} online")


def child_of(pid: int) -> int:
    wait_until(lambda: psutil.Process(pid).children(), timeout=10, what=f"a child of worker {pid}")
    return psutil.Process(pid).children()[0].pid


def test_a_stopped_worker_and_the_forkserver_die_with_a_sigkilled_supervisor(fleet_factory, launch):
    fleet = fleet_factory(["stopped", "other"], heartbeat_interval=0.5, heartbeat_timeout=30.0)
    service, tap = launch(fleet)
    pids = {b: m.pid for b, m in hellos(tap, 2).items()}
    os.kill(pids["stopped"], signal.SIGSTOP)
    wait_until(lambda: psutil.Process(pids["stopped"]).status() == psutil.STATUS_STOPPED, 5, "the worker stopped")
    tree = fleet_tree(service)
    assert set(pids.values()) <= tree and len(tree) >= 4  # forkserver and resource tracker too
    sigkill_supervisor(service, tree)


def test_a_hung_worker_dies_with_a_sigkilled_supervisor(fleet_factory, launch):
    fleet = fleet_factory([{"id": "hung", "simulated": {"hang_after": 0.3}}], heartbeat_interval=0.2,
                          heartbeat_timeout=60.0)
    service, tap = launch(fleet)
    pid = hellos(tap, 1)["hung"].pid
    tap.wait_for(lambda m: isinstance(m, Heartbeat) and m.bot == "hung", what="a first heartbeat")
    # hung: heartbeats stop although the process lives (its loop sleeps in the bot's code)
    last = time.monotonic()
    while time.monotonic() - last < 1.0:
        if tap.read(0.1) is not None and isinstance(tap.seen[-1], Heartbeat):
            last = time.monotonic()
    assert alive(pid)
    tree = fleet_tree(service)
    sigkill_supervisor(service, tree)


def test_a_sigkilled_worker_takes_the_processes_it_started_with_it(fleet_factory, launch):
    fleet = fleet_factory([{"id": "parent", "simulated": {"spawn_child": True}}])
    service, tap = launch(fleet)
    pid = hellos(tap, 1)["parent"].pid
    online(tap, "parent")
    child = child_of(pid)
    service.known_pids.add(child)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not alive(child), timeout=5, what="the dead worker's child to be gone")
    # and the replacement runs normally
    tap.wait_for(lambda m: isinstance(m, StateChange) and m.state is S.RUNNING and m.pid != pid, timeout=15,
                 what="a replacement worker")


def test_a_sigkilled_supervisor_takes_the_workers_children_with_it(fleet_factory, launch):
    fleet = fleet_factory([{"id": "parent", "simulated": {"spawn_child": True}}, "stopped"],
                          heartbeat_timeout=30.0, heartbeat_interval=0.5)
    service, tap = launch(fleet)
    pids = {b: m.pid for b, m in hellos(tap, 2).items()}
    online(tap, "parent")
    child = child_of(pids["parent"])
    os.kill(pids["stopped"], signal.SIGSTOP)
    tree = fleet_tree(service) | {child}
    sigkill_supervisor(service, tree)


LEFTOVER = textwrap.dedent("""
    import sys
    from protocol.config import load_config
    from protocol.signing import new_secret
    from worker.main import run_worker
    from worker.spec import WorkerSpec
    config = load_config(sys.argv[1])
    bot = config.bot(sys.argv[2])
    sys.exit(run_worker(WorkerSpec(
        server_name=config.supervisor.server_name, bot=bot, bot_dir=config.bot_dir(bot.id),
        events_endpoint=config.endpoint("events"), commands_endpoint=config.endpoint("commands"),
        secret=new_secret(), supervisor_pid=int(sys.argv[3]), subscribe_timeout=0.2)))
""")


def test_a_bot_dir_locked_by_a_leftover_worker_of_a_dead_supervisor_is_recovered(fleet_factory, launch):
    """A worker left running (stopped) after its supervisor died holds the bot's lock; a new
    supervisor on the same directories takes the bot back instead of failing it dir-locked."""
    fleet = fleet_factory(["b1"], heartbeat_timeout=10.0, heartbeat_interval=0.5)
    fleet.run_dir.mkdir(mode=0o700)
    dead_supervisor = subprocess.Popen(["sleep", "600"])
    leftover = subprocess.Popen([sys.executable, "-c", LEFTOVER, str(fleet.config_path), "b1",
                                 str(dead_supervisor.pid)], cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        lock = fleet.bot_dir("b1") / ".lock"
        wait_until(lambda: lock.exists() and lock.read_text().split()[:1] == [str(leftover.pid)], 15,
                   "the leftover worker to lock the bot dir")
        os.kill(leftover.pid, signal.SIGSTOP)  # a stopped worker never notices its supervisor go
        dead_supervisor.kill()
        dead_supervisor.wait(5)
        service, tap = launch(fleet)
        running = tap.wait_for(lambda m: isinstance(m, StateChange) and m.bot == "b1" and m.state is S.RUNNING,
                               timeout=20, what="b1 running")
        assert running.pid != leftover.pid
        assert leftover.wait(5) == -signal.SIGKILL
        status = service.control("status", {"bots": ["b1"]})
        bot = status["bots"][0] if isinstance(status, dict) and "bots" in status else status[0]
        assert bot["container_state"] == "running", bot
    finally:
        kill_pid(leftover.pid)
        leftover.wait(5)
        dead_supervisor.kill()
        dead_supervisor.wait(5)


def test_ps_names_each_worker_by_its_bot(fleet_factory, launch):
    fleet = fleet_factory(["alpha"])
    service, tap = launch(fleet)
    pid = hellos(tap, 1)["alpha"].pid
    wait_until(lambda: "botvisor worker test/alpha" in " ".join(psutil.Process(pid).cmdline()), 5,
               "the worker's process title")
    assert "botvisor supervisor test" in " ".join(psutil.Process(service.pid).cmdline())
