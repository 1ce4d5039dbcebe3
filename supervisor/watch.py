"""`botvisor run --watch`: restart a bot as soon as its app's source files change (development).

A thread of the `run` process watches the apps' directories with watchfiles (inotify) and asks
the supervisor for the restart over its own control socket, as an operator's `botvisor restart`
would: the supervisor loop stays single-threaded. The new worker imports the current code (the
app is never imported by the supervisor or the forkserver). Directories are those of the apps
configured when `run` started.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from protocol.config import Config

log = logging.getLogger("botvisor.watch")
#: ms watchfiles waits for a burst of writes (an editor's save) to end before it reports
DEBOUNCE_MS = 150


class AppWatcher(threading.Thread):
    def __init__(self, config: Config, watched: dict[str, tuple[str, ...]]) -> None:
        super().__init__(name="app-watcher", daemon=True)
        self.config = config
        #: bot id -> directories of its app's code
        self.watched = {bot: tuple(Path(d) for d in dirs) for bot, dirs in watched.items() if dirs}
        self.stopping = threading.Event()

    def bots_for(self, changed: set[str]) -> list[str]:
        paths = [Path(p) for p in changed]
        return sorted(bot for bot, dirs in self.watched.items()
                      if any(path == d or d in path.parents for path in paths for d in dirs))

    def run(self) -> None:
        from watchfiles import PythonFilter, watch

        from protocol.client import ControlClient, ControlError

        dirs = sorted({str(d) for dirs in self.watched.values() for d in dirs})
        if not dirs:
            return
        log.info("watching %s for app changes", ", ".join(dirs))
        for changes in watch(*dirs, watch_filter=PythonFilter(), debounce=DEBOUNCE_MS, step=20,
                             stop_event=self.stopping, raise_interrupt=False):
            bots = self.bots_for({path for _, path in changes})
            if not bots:
                continue
            log.info("app files changed (%s): restarting %s", ", ".join(sorted({p for _, p in changes})[:3]),
                     ", ".join(bots))
            try:
                with ControlClient.for_config(self.config, timeout=5.0) as client:
                    client.call("restart", {"bots": bots})
            except ControlError as exc:
                log.warning("could not restart %s: %s", ", ".join(bots), exc)
