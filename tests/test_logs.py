"""Logs: a worker's stray stdout/stderr captured whole into its log, files per bot, `botvisor logs`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
from collections import defaultdict

from protocol import Hello
from worker.logs import MAX_LINE, split_line

from .harness import REPO, Service, Tap, wait_until

#: one whole record: timestamp, level, bot, pid, logger, message
LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) bot=(\S+) pid=\d+ "
                  r"(\S+): (.*)$")
PRINTED = re.compile(r"^simulated (stdout|stderr) line (\d+) from (\S+)$")


def printed_numbers(lines: list[str], bot: str) -> dict[str, list[int]]:
    """The numbers of the simulated prints found in ``lines``, by stream; every line must be whole."""
    found: dict[str, list[int]] = defaultdict(list)
    for line in lines:
        record = LINE.match(line)
        assert record, f"not a whole log line: {line[:200]!r}"
        level, who, logger, message = record.groups()
        printed = PRINTED.match(message)
        if who == bot and printed:
            stream, number, source = printed.groups()
            assert source == bot and logger == stream, line
            assert level == ("INFO" if stream == "stdout" else "WARNING"), line
            found[stream].append(int(number))
    return found


def assert_contiguous(numbers: list[int], what: str, start: int | None = 1) -> None:
    first = numbers[0] if start is None else start
    assert numbers == list(range(first, first + len(numbers))), f"{what}: lines lost or out of order"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=30)


def test_prints_are_captured_into_each_bots_file_whole_and_none_lost(fleet_factory, launch):
    bots = [{"id": f"p{i}", "simulated": {"print_every": 0.002}} for i in range(2)]
    fleet = fleet_factory(bots, log_dir="logs")
    log_dir = fleet.root / "logs"
    service, tap = launch(fleet)

    def printed_enough() -> bool:
        paths = [log_dir / f"{b['id']}.log" for b in bots]
        return all(p.exists() and p.read_text().count("simulated stderr line") >= 300 for p in paths)

    wait_until(printed_enough, timeout=30, what="300 printed lines from each bot", interval=0.1)
    service.signal(signal.SIGTERM)
    assert service.wait(timeout=15) == 0
    for bot in ("p0", "p1"):
        lines = (log_dir / f"{bot}.log").read_text().splitlines()
        found = printed_numbers(lines, bot)
        assert all(LINE.match(line).group(2) == bot for line in lines), "a bot's file holds only its own lines"
        assert_contiguous(found["stdout"], f"{bot} stdout")
        assert_contiguous(found["stderr"], f"{bot} stderr")
        # each pass of the worker's loop prints both; a graceful stop flushes both to the last line
        assert found["stdout"][-1] == found["stderr"][-1] >= 300
        assert "stopping: received SIGTERM" in lines[-3] + lines[-2] + lines[-1]
    supervisor_lines = (log_dir / "@supervisor.log").read_text().splitlines()
    assert all(LINE.match(line) for line in supervisor_lines)
    assert "supervisor stopped" in supervisor_lines[-1]
    assert " INFO " not in service.log(), "with log_dir, stderr gets warnings and errors only"

    # botvisor logs -n N: the file's last N lines
    shown = run_cli("logs", "-c", str(fleet.config_path), "p1", "-n", "5")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines() == (log_dir / "p1.log").read_text().splitlines()[-5:]
    own = run_cli("logs", "-c", str(fleet.config_path), "@supervisor", "-n", "1")
    assert "supervisor stopped" in own.stdout
    unknown = run_cli("logs", "-c", str(fleet.config_path), "nobody")
    assert unknown.returncode == 1 and "no bot 'nobody'" in unknown.stderr


class PipedService(Service):
    """`botvisor run` with stdout and stderr on one pipe, as journald's stream connection is."""

    def __init__(self, fleet) -> None:  # noqa: D107 - replaces Service's log file with a pipe
        self.fleet = fleet
        self.log_path = fleet.root / "supervisor.log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "run", "-c", str(fleet.config_path)],
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid
        self.known_pids: set[int] = set()
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))


def test_two_bots_printing_fast_on_the_shared_stderr_never_mix_mid_line(fleet_factory):
    bots = [{"id": f"p{i}", "simulated": {"print_every": 0.0005}} for i in range(2)]
    fleet = fleet_factory(bots)
    tap = Tap(fleet.endpoint("tap"))
    service = PipedService(fleet)
    try:
        tap.wait_welcome(timeout=15, service=service)
        service.control("start", {"bots": fleet.deferred})
        for bot in ("p0", "p1"):
            tap.wait_for(lambda m, bot=bot: isinstance(m, Hello) and m.bot == bot, what=f"{bot}'s hello")
        wait_until(lambda: sum("simulated stderr line" in line for line in list(service.lines)) >= 2000,
                   timeout=30, what="2000 printed lines on the shared stderr", interval=0.05)
        service.signal(signal.SIGTERM)
        assert service.wait(timeout=15) == 0
        service.reader.join(5)
        for bot in ("p0", "p1"):
            found = printed_numbers(service.lines, bot)
            assert_contiguous(found["stdout"], f"{bot} stdout")
            assert_contiguous(found["stderr"], f"{bot} stderr")
            assert found["stdout"][-1] == found["stderr"][-1] >= 500
    finally:
        service.cleanup(tap.worker_pids)
        tap.close()


def test_logs_follows_a_bots_file_across_rotations(fleet_factory, launch):
    bots = [{"id": "p0", "simulated": {"print_every": 0.005}}]
    fleet = fleet_factory(bots, log_dir="logs", log_max_bytes=4096, log_backups=2)
    service, tap = launch(fleet)
    tap.wait_for(lambda m: isinstance(m, Hello) and m.bot == "p0", what="p0's hello")
    follower = subprocess.Popen([sys.executable, "-m", "supervisor.cli", "logs", "-c", str(fleet.config_path),
                                 "p0", "-f", "-n", "3"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(raw.decode().rstrip("\n") for raw in follower.stdout),
                              daemon=True)
    reader.start()
    try:
        def followed_far() -> bool:
            numbers = printed_numbers([line for line in list(lines) if LINE.match(line)], "p0")["stdout"]
            return len(numbers) >= 200

        wait_until(followed_far, timeout=30, what="200 printed lines seen by `botvisor logs -f`", interval=0.05)
        rotated = sorted(p.name for p in (fleet.root / "logs").iterdir())
        assert rotated == ["@supervisor.log", "p0.log", "p0.log.1", "p0.log.2"], rotated
    finally:
        follower.kill()
        follower.wait(5)
        reader.join(5)
    found = printed_numbers(lines, "p0")
    # the last lines, then 200 more of ~100 bytes through several 4 KiB files: -f missed none of them
    assert_contiguous(found["stdout"], "followed stdout", start=None)
    assert_contiguous(found["stderr"], "followed stderr", start=None)


def test_logs_without_log_dir_says_where_the_logs_are(fleet_factory):
    fleet = fleet_factory(["b1"])
    result = run_cli("logs", "-c", str(fleet.config_path), "b1")
    assert result.returncode == 2
    assert "journalctl -u botvisor.service" in result.stderr and "bot=b1 " in result.stderr
    assert "log_dir" in result.stderr


def test_long_captured_lines_are_cut_under_pipe_buf_on_character_boundaries():
    text = ("é" * 5000).encode()
    pieces = split_line(text)
    assert all(len(p) <= MAX_LINE for p in pieces) and b"".join(pieces) == text
    assert all(p.decode() for p in pieces), "no piece may start or end inside a character"
    assert split_line(b"short") == [b"short"]
    assert MAX_LINE + 200 < 4096, "a record (prefix + piece) must stay under PIPE_BUF"
