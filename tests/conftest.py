from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .harness import Fleet, Service, Tap, make_fleet


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Callable[..., Fleet]:
    def factory(bots: Any = ("b1",), **supervisor: Any) -> Fleet:
        return make_fleet(tmp_path, bots, **supervisor)

    return factory


@pytest.fixture
def launch() -> Iterator[Callable[..., tuple[Service, Tap]]]:
    """Start a supervisor with a tap already connected (so no early message is missed)."""
    started: list[tuple[Service, Tap]] = []

    def start(fleet: Fleet, env: dict[str, str] | None = None, args: Any = ()) -> tuple[Service, Tap]:
        tap = Tap(fleet.endpoint("tap"))
        service = Service(fleet, env=env, args=args)
        started.append((service, tap))
        tap.wait_welcome(timeout=15, service=service)
        if fleet.deferred:
            service.control("start", {"bots": fleet.deferred})
        return service, tap

    yield start
    for service, tap in started:
        service.cleanup(tap.worker_pids)
        tap.close()
