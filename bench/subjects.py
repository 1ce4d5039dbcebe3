"""The supervisors under test, behind one small interface the scenarios drive.

A Subject starts its daemon, lists its worker pids (from /proc, the same way for all three),
and, for botvisor, reports hellos and state changes through a TapRecorder.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from . import configs
from .procs import Reaper, alive, children
from .tap import TapRecorder


class Subject:
    name = "?"
    has_hello = False

    def __init__(self, root: Path, n: int, reaper: Reaper) -> None:
        self.root, self.n, self.reaper = root, n, reaper
        self.proc = None  # type: ignore[assignment]
        self.started_at = 0.0
        self.settings_text = ""

    # -- what differs per supervisor ---------------------------------------------------
    def argv(self) -> list[str]:
        raise NotImplementedError

    def worker_pids(self) -> set[int]:
        """Live or zombie worker pids; every pid seen is remembered for the final kill."""
        pids = children(self.pid)
        self.reaper.saw(pids)
        return pids

    # -- common ----------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        argv = self.argv()
        self.started_at = time.monotonic()
        self.proc = self.reaper.popen(argv, log=self.root / "daemon.log", cwd=configs.REPO, env=self.env())

    def env(self) -> dict[str, str]:
        # the peers run from their own venv: botvisor's package named `supervisor` must not shadow
        # supervisord's; their workers find botvisor through the working directory (python -m)
        return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def live_workers(self) -> set[int]:
        return {p for p in self.worker_pids() if alive(p)}

    def check_running(self) -> None:
        if self.proc.poll() is not None:
            log = (self.root / "daemon.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{log}")

    def terminate(self) -> None:
        self.worker_pids()
        self.proc.send_signal(signal.SIGTERM)

    def close(self) -> None:
        """Kill this subject's daemon and everything under it, by pid."""
        pids = {self.pid} | self.reaper.descendants(self.pid) | self.worker_pids()
        for pid in pids:
            if alive(pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(10)
        except Exception:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(alive(p) for p in pids):
            time.sleep(0.02)


class Botvisor(Subject):
    name = "botvisor"
    has_hello = True

    def __init__(self, root: Path, settings: configs.BotvisorSettings, reaper: Reaper) -> None:
        super().__init__(root, settings.n, reaper)
        self.settings = settings
        self.config = configs.write_botvisor_config(root, settings)
        self.settings_text = settings.describe()
        self.tap: TapRecorder | None = None
        self._helpers: set[int] = set()

    def endpoint(self, role: str) -> str:
        return f"ipc://{self.root / 'run' / (role + '.sock')}"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "supervisor.cli", "run", "-c", str(self.config)]

    def start(self) -> None:
        # the tap connects first and retries every 5 ms, so it is subscribed before any worker is
        self.tap = TapRecorder(self.endpoint("tap"))
        super().start()

    def worker_pids(self) -> set[int]:
        # workers are children of the forkserver, itself a child of the supervisor
        pids: set[int] = set()
        for helper in children(self.pid):
            self._helpers.add(helper)
            pids |= children(helper)
        self.reaper.saw(pids | self._helpers)
        return pids

    def helper_pids(self) -> set[int]:
        """The forkserver (and multiprocess's resource tracker, when there is one)."""
        self.worker_pids()
        return {p for p in self._helpers if alive(p)}

    def close(self) -> None:
        if self.tap is not None:
            self.tap.close()
            self.tap = None
        super().close()


class Supervisord(Subject):
    name = "supervisord"

    def __init__(self, root: Path, n: int, reaper: Reaper, peers_bin: Path, worker_config: Path) -> None:
        super().__init__(root, n, reaper)
        root.mkdir(parents=True, exist_ok=True)
        self.bin = peers_bin
        self.conf = configs.write_supervisord_config(root, worker_config, n)
        self.settings_text = "autorestart=true, startsecs=0"

    def argv(self) -> list[str]:
        return [str(self.bin / "supervisord"), "-n", "-c", str(self.conf)]


class Circus(Subject):
    def __init__(self, root: Path, n: int, reaper: Reaper, peers_bin: Path, worker_config: Path,
                 check_delay: float | None) -> None:
        super().__init__(root, n, reaper)
        root.mkdir(parents=True, exist_ok=True)
        self.bin = peers_bin
        self.conf = configs.write_circus_config(root, worker_config, n, check_delay)
        self.name = "circus" if check_delay is None else f"circus cd={check_delay:g}"
        self.settings_text = "respawn=true, check_delay=" + ("default" if check_delay is None else f"{check_delay:g}")

    def argv(self) -> list[str]:
        return [str(self.bin / "circusd"), str(self.conf)]
