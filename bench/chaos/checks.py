"""The soak's end-of-run checks and the table they print."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any

import psutil

from worker.credentials import CredentialsManager
from worker.recovery import check_metadata, check_store

from .actions import Record
from .fleet import BACKOFF, FATAL_BOT, HEARTBEAT, SERVER, TIMEOUT, Fleet
from .observe import CleanTap, ProcSampler, RssSampler

#: a healthy fleet again after the chaos stops: a stopped worker judged stale (heartbeat_timeout),
#: its SIGKILL grace (1 s), the longest backoff, a new worker's hello deadline, and 2 s of slack
CONVERGE_BOUND = TIMEOUT + 1.0 + BACKOFF["max"] + TIMEOUT + 2.0
#: status must answer within this while the CPU is saturated
STATUS_BOUND = 1.0
#: supervisor RSS growth allowed over the second half (allocator noise)
RSS_FLAT_MIB = 1.5


@dataclass
class Check:
    name: str
    figure: str
    bound: str
    ok: bool


def converge(fleet: Fleet, bound: float) -> tuple[float | None, dict[str, Any]]:
    """Seconds until every bot that should run is running and healthy (None: not within bound)."""
    started = time.monotonic()
    last: dict[str, Any] = {}
    while time.monotonic() - started < bound:
        try:
            last = {b["bot_id"]: b for b in fleet.control("status", timeout=5)["bots"]}
        except Exception:  # noqa: BLE001
            time.sleep(0.1)
            continue
        if all(b in last and last[b]["container_state"] == "running" and last[b]["is_healthy"]
               for b in fleet.should_run()):
            return time.monotonic() - started, last
        time.sleep(0.1)
    return None, last


def fleet_processes(server: str = SERVER) -> list[psutil.Process]:
    """Every process whose title says it is a worker of this fleet."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if cmdline.startswith(f"botvisor worker {server}/"):
            found.append(process)
    return found


def session_members(leaders: set[int]) -> list[psutil.Process]:
    """Processes living in a session some worker led (its children, however they were made)."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) in leaders and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
        except (OSError, psutil.Error):
            pass
    return members


def unknown_processes(status: dict[str, Any], leaders: set[int]) -> tuple[list[int], list[int]]:
    """(fleet workers the supervisor does not know, processes of dead workers' sessions)."""
    known = {b["pid"] for b in status.values() if b.get("pid")}
    strangers = [p.pid for p in fleet_processes() if p.pid not in known and _alive(p)]
    # a dead worker's pid can be a new process's by now (pid_max wraps on a busy machine): a
    # session whose leader lives is that process's, and a live worker of ours is a stranger above
    dead = {pid for pid in leaders - known if not psutil.pid_exists(pid)}
    orphans = [p.pid for p in session_members(dead)]
    return strangers, orphans


#: what a simulated bot with spawn_child logs (worker/backends/simulated.py)
CHILD_LINE = re.compile(r"pid=(\d+) botvisor\.backend\.simulated: started child process (\d+)")


def started_children(fleet: Fleet) -> list[tuple[int, int]]:
    """(worker pid, child pid) of every child process a worker said it started."""
    try:
        text = (fleet.root / "supervisor.log").read_text(errors="replace")
    except OSError:
        return []
    return [(int(w), int(c)) for w, c in CHILD_LINE.findall(text)]


def surviving_children(children: list[tuple[int, int]], live_workers: set[int]) -> list[int]:
    """Children still running although the worker that started them is gone. A pid counts only
    while it is still in its worker's session (else it is a new process's)."""
    left = []
    for worker, child in children:
        if worker in live_workers:
            continue
        try:
            if os.getsid(child) == worker and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
                left.append(child)
        except (OSError, psutil.Error):
            pass
    return left


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stores(fleet: Fleet) -> tuple[int, list[str]]:
    """(bot dirs checked, problems): every session store and metadata file must be sound."""
    manager = CredentialsManager(fleet.root / "auth", SERVER)
    problems, checked = [], 0
    for directory in manager.get_all_bot_dirs():
        bot = directory.name[len("bot_"):]
        checked += 1
        store, meta = manager.store_path(bot), manager.metadata_path(bot)
        if store.exists() and (why := check_store(store)):
            problems.append(f"{bot}: {why}")
        if meta.exists() and (why := check_metadata(meta)):
            problems.append(f"{bot}: {why}")
    return checked, problems


def end_of_run(fleet: Fleet, record: Record, tap: CleanTap, procs: ProcSampler, rss: RssSampler,
               stats_before: dict[str, int]) -> tuple[list[Check], dict[str, Any]]:
    checks: list[Check] = []
    took, status = converge(fleet, CONVERGE_BOUND)
    not_running = [b for b in fleet.should_run() if status.get(b, {}).get("container_state") != "running"]
    checks.append(Check("every bot that should run is running and healthy",
                        f"{len(fleet.should_run()) - len(not_running)}/{len(fleet.should_run())} in "
                        + (f"{took:.1f} s" if took is not None else f"> {CONVERGE_BOUND:g} s: {not_running}"),
                        f"<= {CONVERGE_BOUND:g} s", took is not None))
    failed = {b: s["reason"] for b, s in status.items() if s["container_state"] == "failed"}
    fatal_ok = set(failed) == {FATAL_BOT} and "temporary-ban" in (failed.get(FATAL_BOT) or "")
    checks.append(Check("only the bot with a fatal cause is failed, with it",
                        "; ".join(f"{b}: {r}" for b, r in failed.items())[:70] or "none failed",
                        f"{FATAL_BOT}: temporary-ban", fatal_ok))
    leaders = set().union(*tap.worker_pids.values()) | record.session_pids
    strangers, orphans = unknown_processes(status, leaders)
    checks.append(Check("no fleet process unknown to the supervisor", f"{len(strangers)} {strangers[:5]}", "0",
                        not strangers))
    checks.append(Check("no process of a dead worker survives",
                        f"{len(orphans)} {orphans[:5]} in {len(leaders)} worker sessions", "0", not orphans))
    children = started_children(fleet)
    known = {b["pid"] for b in status.values() if b.get("pid")}
    left = surviving_children(children, known)
    ended = sum(w not in known for w, _ in children)
    checks.append(Check("every child a dead worker started ended with it",
                        f"{len(left)} {left[:5]} of {ended} started by dead workers", "0, of >= 1",
                        not left and ended >= 1))
    checked, problems = stores(fleet)
    checks.append(Check("session stores and metadata intact", f"{checked} dirs, {len(problems)} bad "
                        + "; ".join(problems)[:60], "0 bad", not problems and checked >= len(fleet.should_run())))
    stats = fleet.control("status")["stats"]
    lost = sum(s["events_lost"] for s in status.values())
    gaps = sum(tap.gaps.values())
    per_bot_ok = all(tap.gaps[b] <= status.get(b, {}).get("events_lost", 0) for b in tap.gaps)
    checks.append(Check("every seq gap the clean tap saw is counted in events_lost",
                        f"tap gaps {gaps}, events_lost {lost}, tap_dropped {stats['tap_dropped']}",
                        "gaps <= events_lost per bot", per_bot_ok))
    rejected = stats["rejected"] - stats_before.get("rejected", 0)
    sent = record.forged_sent + record.garbage_sent
    checks.append(Check("forged and garbage messages counted, never relayed",
                        f"sent {sent}, rejected {rejected}, relayed {tap.relayed_forgeries}",
                        "rejected >= sent, relayed 0", rejected >= sent and tap.relayed_forgeries == 0))
    checks.append(Check("malformed control requests answered, service up",
                        f"{record.done['bad_control']} answered ({record.control_errors} errors), "
                        f"{record.done['oversized']} oversized dropped, {record.control_unanswered} unanswered",
                        "0 unanswered", record.control_unanswered == 0))
    checks += saturation_checks(record, tap, procs)
    head, tail, slope = rss.halves()
    checks.append(Check("supervisor RSS flat in the second half",
                        f"{head:.1f} -> {tail:.1f} MiB ({slope:+.2f} MiB/min); peak "
                        f"{max(r for _, r in rss.samples) / 2**20:.1f} MiB" if rss.samples else "no samples",
                        f"growth <= {RSS_FLAT_MIB:g} MiB", tail - head <= RSS_FLAT_MIB))
    return checks, status


def timeline(record: Record, tap: CleanTap, procs: ProcSampler, bot: str, around: float, before: float = 6.0,
             after: float = 1.0) -> list[str]:
    """What the driver did to ``bot``, what the clean tap saw of it and the states its workers
    were sampled in around ``around``: the evidence a stale verdict is explained with."""
    rows = [(t, f"driver  {what} pid {pid}") for t, what, b, pid in record.aimed if b == bot]
    rows += [(t, f"tap     {what} pid {pid} seq {seq}") for t, b, what, pid, seq in tap.timeline if b == bot]
    pids = tap.worker_pids.get(bot, set())
    runs: list[list[Any]] = []  # consecutive samples of one pid in one state: one row
    for t, pid, state, wchan in procs.samples:
        if pid in pids and around - before <= t <= around + after:
            if runs and runs[-1][1:4] == [pid, state, wchan] and t - runs[-1][4] <= 2.5 * procs.every:
                runs[-1][4], runs[-1][5] = t, runs[-1][5] + 1
            else:
                runs.append([t, pid, state, wchan, t, 1])
    rows += [(t, f"/proc   pid {pid} in {state}{f' ({wchan})' if wchan else ''}, {n} sample(s) to +{last - tap.started:.3f} s")
             for t, pid, state, wchan, last, n in runs]
    if record.saturation:
        rows += [(record.saturation[0], "driver  CPU hogs started")]
        if record.saturation[1]:
            rows += [(record.saturation[1], "driver  CPU hogs stopped")]
    return [f"  +{t - tap.started:7.3f} s  {text}" for t, text in sorted(rows)
            if around - before <= t <= around + after]


@dataclass
class Verdict:
    """A stale verdict on a worker the driver never stopped, with what its quiet time went to."""

    at: float
    bot: str
    pid: int
    reason: str
    #: seconds from the worker's last message (or its start) to the verdict
    quiet: float
    #: of which it was seen blocked in the kernel, uninterruptibly (D: disk I/O, the journal)
    blocked: float
    #: seconds some task on the machine waited on I/O meanwhile (PSI)
    io_stalled: float

    @property
    def on_disk(self) -> bool:
        """Blocked on the disk for all of its quiet time but less than one heartbeat interval:
        its loop could not have beaten, and nothing of the supervisor's or the worker's code was
        to blame (each state is sampled every 0.1 s)."""
        return self.blocked >= self.quiet - HEARTBEAT

    def line(self, started: float) -> str:
        return (f"{self.bot} pid {self.pid} at +{self.at - started:.1f} s: quiet {self.quiet:.1f} s, "
                f"{self.blocked:.1f} s of it in D")


def stale_verdicts(record: Record, tap: CleanTap, procs: ProcSampler) -> list[Verdict]:
    """Stale verdicts on workers the driver never stopped."""
    found = []
    for at, bot, pid, reason in tap.stale_verdicts:
        if pid in record.stopped:
            continue
        heard = [t for t, b, what, p, _ in tap.timeline if p == pid and b == bot and t < at
                 and (not what.startswith("state") or "-> initializing" in what)]
        # the supervisor heard nothing for at least its timeout, whatever the tap saw last
        since = min(max(heard, default=at - TIMEOUT), at - TIMEOUT)
        found.append(Verdict(at, bot, pid, reason, at - since, procs.blocked(pid, since, at),
                             procs.io_stalled(since, at)))
    return found


def saturation_checks(record: Record, tap: CleanTap, procs: ProcSampler) -> list[Check]:
    verdicts = stale_verdicts(record, tap, procs)
    wrong = [v for v in verdicts if not v.on_disk]
    disk = [v for v in verdicts if v.on_disk]
    checks = [Check("no healthy worker judged stale (whole run)",
                    f"{len(wrong)} {'; '.join(v.line(tap.started) for v in wrong[:2])}"
                    + (f" (and {len(disk)} blocked on the disk: {disk[0].line(tap.started)})" if disk else ""),
                    "0 (blocked on the disk: shown)", not wrong)]
    if record.saturation is None:
        return checks
    start, end = record.saturation
    hot = [(v.bot, v.pid) for v in wrong if start <= v.at <= end + TIMEOUT]
    checks.append(Check("CPU saturated: no healthy worker judged stale", f"{len(hot)} {hot[:3]}", "0", not hot))
    during = [s for t, s, hot in record.status_latency if hot]
    worst = max(during, default=0.0)
    checks.append(Check("CPU saturated: status answered in time",
                        f"{len(during)} calls over {end - start:.0f} s, worst {worst * 1000:.0f} ms",
                        f"<= {STATUS_BOUND * 1000:.0f} ms", bool(during) and worst <= STATUS_BOUND))
    return checks


def rss_table(rss: RssSampler, points: int = 10) -> str:
    """The supervisor's RSS over the run, the second half (the flat check's span) marked."""
    rows = rss.profile(points)
    if not rows:
        return "supervisor RSS: no samples"
    end = rows[-1][0]
    head, tail, slope = rss.halves()
    lines = ["supervisor RSS over the chaos (median of each tenth of the samples, one a second)", "",
             "| until | RSS MiB | half |", "| --- | --- | --- |"]
    lines += [f"| {t:6.0f} s | {mib:6.1f} | {'second' if t > end / 2 else 'first'} |" for t, mib in rows]
    lines.append(f"\nsecond half: {head:.1f} -> {tail:.1f} MiB ({tail - head:+.2f} MiB, {slope:+.2f} MiB/min), "
                 f"allowed growth {RSS_FLAT_MIB:g} MiB")
    return "\n".join(lines)


def table(seed: int, duration: float, checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    fwidth = max(len(c.figure) for c in checks)
    lines = [f"chaos soak: seed {seed}, {duration:g} s of chaos, {len(checks)} checks", "",
             f"| {'check':<{width}} | {'figure':<{fwidth}} | bound | result |",
             f"| {'-' * width} | {'-' * fwidth} | --- | --- |"]
    for c in checks:
        lines.append(f"| {c.name:<{width}} | {c.figure:<{fwidth}} | {c.bound} | {'PASS' if c.ok else 'FAIL'} |")
    return "\n".join(lines)
