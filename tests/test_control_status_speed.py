"""`status` at 200 bots: the command handler as the supervisor runs it, with real /proc samples.

A measurement, not a timed assertion (the machine is shared): it prints the time per status
call, and asserts only that every bot is reported.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import psutil

from protocol import BotStatus, Heartbeat, Hello
from protocol.config import parse_config
from protocol.control import Request, encode_reply
from supervisor.commands import dispatch
from supervisor.manager import BotManager
from supervisor.process import ResourceSampler
from supervisor.timers import Timers

BOTS = 200


class SampledProcess:
    """A worker process as the container sees it, sampling a real process as WorkerProcess does."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.sentinel = -1
        self._sampler = ResourceSampler(pid)

    def resources(self) -> tuple[int, float]:
        return self._sampler.sample()

    def signal_tree(self, sig: int) -> None:
        pass


class FakeSupervisor:
    def __init__(self, config) -> None:
        self.config = config
        self.server = config.supervisor.server_name
        self.pid = os.getpid()
        self.instance = 1
        self.stats: dict[str, int] = {}
        self.timers = Timers()
        self.manager = BotManager(self, self.server)

    def spawn(self, container):
        return SampledProcess(os.getpid())

    def watch(self, container): ...
    def unwatch(self, container): ...
    def publish_state(self, container, previous): ...

    def call_later(self, delay, callback):
        return self.timers.call_later(delay, callback)


def test_status_of_200_running_bots(tmp_path: Path, capsys):
    raw = {"supervisor": {"server_name": "speed", "run_dir": str(tmp_path)},
           "bots": [{"id": f"bot{i:03d}"} for i in range(BOTS)]}
    config = parse_config(raw, tmp_path / "botvisor.toml")
    supervisor = FakeSupervisor(config)
    for bot in config.bots:
        container = supervisor.manager.create_bot_container(bot.id, bot)
        container.start()
        pid = container.process.pid
        container.on_message(Hello("speed", bot.id, pid, 0, time.time(), backend="simulated",
                                   heartbeat_interval=30.0, version="t"))
        container.on_message(Heartbeat("speed", bot.id, pid, 1, time.time(), BotStatus.ONLINE))
    replies: list[bytes] = []
    timings = []
    for i in range(30):
        started = time.perf_counter()
        dispatch(supervisor, Request(str(i), "status", {}), lambda reply: replies.append(encode_reply(reply)))
        timings.append(time.perf_counter() - started)
    assert len(replies) == 30
    from protocol.control import decode_reply

    result = decode_reply(replies[-1]).result
    assert len(result["bots"]) == BOTS and all(b["container_state"] == "running" for b in result["bots"])
    with capsys.disabled():
        print(f"\nstatus at {BOTS} bots (handler + msgpack encode): median {statistics.median(timings) * 1000:.1f} ms, "
              f"max {max(timings) * 1000:.1f} ms, reply {len(replies[-1])} bytes")


def test_a_workers_rss_and_cpu_match_what_psutil_reads():
    import threading

    sampler, reference = ResourceSampler(os.getpid()), psutil.Process()
    before, started = reference.cpu_times(), time.monotonic()
    rss, cpu = sampler.sample()
    assert cpu == 0.0, "the first sample has nothing to compare with"
    assert abs(rss - reference.memory_info().rss) < 0.05 * rss, (rss, reference.memory_info().rss)
    stop = time.monotonic() + 0.5
    spin = threading.Thread(target=lambda: [None for _ in iter(lambda: time.monotonic() < stop, False)])
    spin.start()  # a busy thread for half a second (as much of a core as the machine gives it)
    spin.join()
    _, cpu = sampler.sample()
    after, wall = reference.cpu_times(), time.monotonic() - started
    expected = 100 * ((after.user + after.system) - (before.user + before.system)) / wall
    assert expected > 5, "the busy thread got no CPU at all: nothing to compare"
    assert abs(cpu - expected) < 10, f"{cpu} % CPU read, psutil's times say {expected:.1f} %"
    assert ResourceSampler(2 ** 22 + 12345).sample() == (0, 0.0), "a process that is gone reports nothing"


def test_a_sampler_keeps_one_fd_while_its_process_lives_and_none_once_it_is_reaped():
    import subprocess

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    child = subprocess.Popen(["sleep", "30"])
    try:
        before = fds()
        sampler = ResourceSampler(child.pid)
        assert sampler.sample()[0] > 0
        assert sampler.sample()[0] > 0, "read again through the kept fd"
        assert fds() == before + 1
    finally:
        child.kill()
        child.wait()
    # the kept fd names the reaped process, not its pid (which may be reused): it reads nothing
    assert sampler.sample() == (0, 0.0)
    assert fds() == before, "the fd of a process that is gone is closed"
    sampler.close()  # again: harmless


def test_a_sampler_past_its_fd_budget_reads_without_keeping_a_file_open(monkeypatch):
    # kept /proc files may take only part of the fd limit: sentinels and sockets must not fail
    import subprocess

    from supervisor import process

    monkeypatch.setattr(process, "kept_fd_budget", lambda: process._kept)  # the budget is spent
    child = subprocess.Popen(["sleep", "30"])
    try:
        before = len(os.listdir("/proc/self/fd"))
        sampler = ResourceSampler(child.pid)
        sampler.open()
        assert sampler.sample()[0] > 0, "still sampled, by opening the file each time"
        assert len(os.listdir("/proc/self/fd")) == before, "no fd kept past the budget"
    finally:
        child.kill()
        child.wait()
    monkeypatch.undo()
    assert process.kept_fd_budget() >= 256, "a quarter of the soft limit"


def test_the_supervisor_raises_its_soft_fd_limit_to_the_hard_one():
    import subprocess
    import sys

    code = ("import resource; from supervisor.process import raise_fd_limit; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
            "print(raise_fd_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                         cwd=Path(__file__).resolve().parent.parent)
    now, hard = map(int, out.stdout.split())
    assert now == hard, out
