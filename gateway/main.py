"""``botvisor gateway -c FILE``: the gateway process (uvicorn serving gateway/boot.py's staged app).

uvicorn handles SIGTERM and SIGINT (a graceful stop); SIGHUP re-reads the config's webhooks,
as the supervisor's own "reloaded" notice does.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import uvicorn

from protocol.config import Config, split_listen

from .boot import StagedApp
from .runtime import Gateway

log = logging.getLogger("botvisor.gateway")
#: uvloop's event loop (libuv): each tap read and each delivery cost the loop less CPU than on
#: asyncio's own (docs/http.md says how much)
LOOP = "uvloop"
#: the GIL's switch interval (Python's default: 5 ms). A thread back from waiting on the disk
#: (the outbox's fsync under outbox_sync = "full") needs the GIL from the busy loop to hand its
#: result over, and waited up to the interval for it on every commit: p99 at 1,000 events/s
#: under "full" went from 26 to 94 ms to 12 to 20 ms (docs/webhooks.md, "Measured")
SWITCH_INTERVAL_S = 0.001


def serve(config: Config, log_level: str = "info") -> int:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    gateway = Gateway(config)
    gateway.on_started = _install_sighup
    staged = StagedApp(gateway, lambda: build_app(gateway))

    host, port = split_listen(config.gateway.listen)
    # access_log off: uvicorn's access lines carry the query string, where a WebSocket key may be
    server = uvicorn.Server(uvicorn.Config(staged, host=host, port=port, log_level=log_level, access_log=False,
                                           lifespan="on", ws="websockets-sansio", proxy_headers=False, loop=LOOP))

    def built(app: Any) -> None:
        if app is None:  # the API could not be built: stop rather than serve half a gateway
            server.should_exit = True
        else:
            app.state.server = server  # the dashboard's live streams end when it is stopping

    staged.on_built = built
    server.run()
    return 0 if server.started and staged.app is not None else 1


def build_app(gateway: Gateway) -> Any:
    """The FastAPI app with the dashboard (on a thread, while the event path runs: gateway/boot.py)."""
    from .app import create_app
    from .dashboard import mount as mount_dashboard

    app = create_app(gateway, manage=False)
    mount_dashboard(app)  # the operators' pages under /ui/ (docs/dashboard.md)
    return app


def _install_sighup(gateway: Gateway) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(_reload(gateway)))


async def _reload(gateway: Gateway) -> Any:
    try:
        await gateway.reload()
    except Exception as exc:  # a bad file leaves the running webhooks as they were
        log.error("reload on SIGHUP refused: %s", exc)
