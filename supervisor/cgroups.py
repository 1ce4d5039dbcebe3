"""The supervisor's CPU share: the workers in one cgroup of low weight, the supervisor in one of
high weight, so a busy fleet cannot starve the process that relays, judges and answers for it.

Why not nice alone: nice is a weight per scheduling entity, and every worker is one (with
autogroup scheduling, each worker's session is). Against N busy workers the supervisor's share
falls like 1/N: 8 % of a core at N = 200 with the workers 10 nice steps below it
(bench/RESULTS.md). A cgroup weighs a *group*: all the workers together get WORKERS_WEIGHT
against the supervisor's SUPERVISOR_WEIGHT, however many they are, and whatever CPU the
supervisor does not use is theirs (a weight is no cap).

Where it works, tried in this order:

- **cgroup v2, delegated** (systemd with ``Delegate=yes``, the shipped unit): the service's own
  cgroup is ours; the supervisor moves itself into ``<own>/supervisor``, enables the cpu
  controller for the children and makes ``<own>/workers``. systemd removes them with the unit.
- **cgroup v1 with a writable cpu hierarchy** (run by hand as root on a host without systemd):
  ``<cpu mount><own path>/botvisor-<server>-<pid>-supervisor`` and ``...-workers``, side by
  side with the rest of the host (no common parent: a parent group would weigh the supervisor
  as one share of the host, and on a busy host its p99 latency went from 15 to 85-240 ms),
  removed at exit (empty groups of supervisors that died are removed at the next start).
- **neither** (an unprivileged user, no delegation): ``setup`` raises Unavailable naming why; the
  supervisor says so in a notice and runs on with the workers' nice (worker/priority.py).

The forkserver stays with the supervisor (a replacement is forked at once whatever the fleet
does); each worker is moved to the workers' group by the supervisor right after it is forked
(``place``), so a worker that drops to another user needs no rights on the cgroup.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("botvisor.cgroups")

#: cgroup v2 ``cpu.weight`` (1..10000, default 100), inside the service's own cgroup
SUPERVISOR_WEIGHT = 10000
WORKERS_WEIGHT = 100
#: cgroup v1 ``cpu.shares`` (default 1024), beside the host's other processes: the workers
#: together weigh one ordinary process, the supervisor ten
V1_SUPERVISOR_SHARES = 10240
V1_WORKERS_SHARES = 1024
#: set to 0/off/no/false to leave cgroups alone (the workers' nice still applies)
ENV = "BOTVISOR_CPU_SHARE"
PROC_CGROUP = Path("/proc/self/cgroup")
MOUNTINFO = Path("/proc/self/mountinfo")
V2_ROOT = Path("/sys/fs/cgroup")


class Unavailable(Exception):
    """No cgroup this process may write: the reason, for the operator."""


@dataclass
class CpuShare:
    """Two cgroups made by ``setup``: the supervisor already in one, workers go to the other."""

    version: int
    supervisor: Path
    workers: Path
    #: v1: the groups made for this supervisor (removed at release); v2: none (systemd's)
    made: tuple[Path, ...] = ()
    #: where the supervisor was before (v1: it goes back there at release)
    origin: Path | None = None
    _failed_once: bool = False

    def describe(self) -> str:
        if self.version == 1:
            return (f"cgroup v1: supervisor in {self.supervisor} (cpu.shares {V1_SUPERVISOR_SHARES}), "
                    f"workers in {self.workers} (cpu.shares {V1_WORKERS_SHARES})")
        return (f"cgroup v2: supervisor in {self.supervisor} (cpu.weight {SUPERVISOR_WEIGHT}), "
                f"workers in {self.workers} (cpu.weight {WORKERS_WEIGHT})")

    def place(self, pid: int) -> None:
        """Move worker ``pid`` (all its threads) into the workers' group; a failure is logged once
        and the worker runs on where it is (a worker that already exited is no failure)."""
        try:
            _write(self.workers / "cgroup.procs", str(pid))
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return
            if not self._failed_once:
                self._failed_once = True
                log.warning("could not move worker %d into %s: %s (it keeps the supervisor's share)",
                            pid, self.workers, exc)

    def release(self) -> None:
        """v1: the supervisor back where it was, with whatever else of ours is still in its group,
        and the groups it made removed (when empty).

        Besides the supervisor its group holds only what it started there: multiprocess's
        resource tracker (started with the forkserver) lives until the supervisor has exited,
        so left behind it kept the group from being removed at every stop.
        """
        if not self.made or self.origin is None:
            return
        try:
            _write(self.origin / "cgroup.procs", str(os.getpid()))
        except OSError as exc:
            log.warning("could not leave %s: %s", self.supervisor, exc)
            return
        try:
            ours = (self.supervisor / "cgroup.procs").read_text().split()
        except OSError:
            ours = []
        for pid in ours:
            try:
                _write(self.origin / "cgroup.procs", pid)
            except OSError as exc:
                if exc.errno != errno.ESRCH:  # one that exited meanwhile is gone anyway
                    log.warning("could not move %s out of %s: %s", pid, self.supervisor, exc)
        _remove(self.made)


_share: CpuShare | None = None


def current() -> CpuShare | None:
    """The share set up by ``setup`` in this process, if any."""
    return _share


def place(pid: int) -> None:
    """Move a new worker into the workers' group, when there is one (process.py's hook)."""
    if _share is not None:
        _share.place(pid)


def setup(server: str) -> CpuShare:
    """Put this process in a high-weight group and make the workers' one; Unavailable says why not."""
    global _share
    if _share is not None:
        return _share
    if os.environ.get(ENV, "").strip().lower() in ("0", "off", "no", "false"):
        raise Unavailable(f"turned off by ${ENV}")
    entries = _own_cgroups(PROC_CGROUP.read_text())
    reasons = []
    for attempt in (_setup_v2, _setup_v1):
        try:
            _share = attempt(entries, server)
            log.info("CPU share: %s", _share.describe())
            return _share
        except Unavailable as exc:
            reasons.append(str(exc))
    raise Unavailable("; ".join(reasons))


def release() -> None:
    global _share
    if _share is not None:
        _share.release()
        _share = None


# -- the two layouts ----------------------------------------------------------------------------
def _setup_v2(entries: dict[str, str], server: str) -> CpuShare:
    own = entries.get("")
    if own is None:
        raise Unavailable("cgroup v2: this process is in no v2 cgroup")
    base = V2_ROOT / own.lstrip("/")
    if not (base / "cgroup.controllers").exists():
        raise Unavailable(f"cgroup v2: {V2_ROOT} is not a cgroup2 mount")
    if "cpu" not in (base / "cgroup.controllers").read_text().split():
        raise Unavailable(f"cgroup v2: the cpu controller is not available in {base} (not delegated?)")
    if not os.access(base / "cgroup.procs", os.W_OK) or not os.access(base, os.W_OK):
        raise Unavailable(f"cgroup v2: {base} is not writable (systemd: Delegate=yes)")
    supervisor, workers = base / "supervisor", base / "workers"
    try:
        supervisor.mkdir(exist_ok=True)
        others = [p for p in (base / "cgroup.procs").read_text().split() if int(p) != os.getpid()]
        if others:  # v2 allows no process beside child groups; we move none we did not start
            raise Unavailable(f"cgroup v2: {base} holds other processes ({', '.join(others[:5])})")
        _write(supervisor / "cgroup.procs", str(os.getpid()))
        if "cpu" not in (base / "cgroup.subtree_control").read_text().split():
            _write(base / "cgroup.subtree_control", "+cpu")
        workers.mkdir(exist_ok=True)
        _write(supervisor / "cpu.weight", str(SUPERVISOR_WEIGHT))
        _write(workers / "cpu.weight", str(WORKERS_WEIGHT))
    except OSError as exc:
        raise Unavailable(f"cgroup v2: {exc}") from None
    return CpuShare(2, supervisor, workers)


def _setup_v1(entries: dict[str, str], server: str) -> CpuShare:
    own = entries.get("cpu")
    mount = _v1_cpu_mount(MOUNTINFO.read_text()) if own is not None else None
    if own is None or mount is None:
        raise Unavailable("cgroup v1: no cpu hierarchy is mounted")
    origin = mount / own.lstrip("/")
    if not os.access(origin, os.W_OK):
        raise Unavailable(f"cgroup v1: {origin} is not writable (run as root, or give the user that directory)")
    _remove_stale(origin)
    prefix = origin / f"botvisor-{server}-{os.getpid()}"
    supervisor, workers = Path(f"{prefix}-supervisor"), Path(f"{prefix}-workers")
    try:
        for group in (supervisor, workers):
            group.mkdir(exist_ok=True)
        _write(supervisor / "cpu.shares", str(V1_SUPERVISOR_SHARES))
        _write(workers / "cpu.shares", str(V1_WORKERS_SHARES))
        _write(supervisor / "cgroup.procs", str(os.getpid()))
    except OSError as exc:
        _remove((workers, supervisor))
        raise Unavailable(f"cgroup v1: {exc}") from None
    return CpuShare(1, supervisor, workers, made=(workers, supervisor), origin=origin)


# -- helpers --------------------------------------------------------------------------------------
def _own_cgroups(text: str) -> dict[str, str]:
    """controller -> path from /proc/self/cgroup ("" is the v2 entry "0::/path")."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _id, controllers, path = parts
        if not controllers:
            out[""] = path
        for name in controllers.split(","):
            if name:
                out[name] = path
    return out


def _v1_cpu_mount(mountinfo: str) -> Path | None:
    """The mount point of the v1 hierarchy that has the cpu controller."""
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(tail) >= 3 and tail[0] == "cgroup" and "cpu" in tail[2].split(","):
            return Path(fields[4])
    return None


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)  # as a shell's `echo >` does
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _remove(groups: tuple[Path, ...]) -> None:
    """rmdir each group; one that still holds a process stays (and says so)."""
    for group in groups:
        try:
            group.rmdir()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("left %s in place: %s", group, exc)


#: the name of a group made by ``_setup_v1``: botvisor-<server>-<supervisor's pid>-<role>
_GROUP = re.compile(r"botvisor-.+-(?P<pid>[0-9]+)-(?:supervisor|workers)")


def _remove_stale(origin: Path) -> None:
    """Empty groups left by botvisor supervisors that died without releasing them (SIGKILL):
    their pid is gone, and their workers died with them (a group still holding one stays).
    Only groups named as botvisor names its own, of a pid that no longer runs, are touched."""
    for group in sorted(origin.glob("botvisor-*")):
        named = _GROUP.fullmatch(group.name)
        if named is None or not group.is_dir():
            continue
        pid = int(named["pid"])
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            _remove((group,))
