from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .harness import REPO, Fleet, Service, Tap, make_fleet

#: set in the child interpreter an ``own_process`` test runs in
OWN_PROCESS_ENV = "BOTVISOR_TEST_OWN_PROCESS"
OWN_PROCESS_TIMEOUT_S = 100  # under pytest-timeout's 120 s, so the child's own report is what is shown


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "own_process: run the test in a fresh interpreter of its own (it makes "
                                       "Go clients: their stop threads must not outlive it in the suite's process)")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """An ``own_process`` test is run by a child pytest on its node id. A neonize client's
    ``stop()`` runs on a daemon thread that can block in Go for up to a minute after the test;
    two such threads left in one process have aborted the whole suite (SIGABRT from Go)."""
    if pyfuncitem.get_closest_marker("own_process") is None or os.environ.get(OWN_PROCESS_ENV):
        return None
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q", "-p", "no:cacheprovider"],
                              cwd=REPO, env={**os.environ, OWN_PROCESS_ENV: "1"}, capture_output=True, text=True,
                              timeout=OWN_PROCESS_TIMEOUT_S)
    except subprocess.TimeoutExpired as timeout:  # subprocess.run has killed the child
        pytest.fail(f"the test's own interpreter did not finish in {OWN_PROCESS_TIMEOUT_S} s\n"
                    f"{(timeout.stdout or b'')[-4000:]!r}", pytrace=False)
    if done.returncode != 0 or not re.search(r"\b1 passed\b", done.stdout):
        pytest.fail(f"in its own interpreter (exit {done.returncode}):\n{done.stdout[-6000:]}{done.stderr[-3000:]}",
                    pytrace=False)
    return True


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


@pytest.fixture(autouse=True)
def _no_go_client_in_the_suites_process(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enforce the rule above: a neonize client made in the suite's own process fails its test."""
    if os.environ.get(OWN_PROCESS_ENV) or request.node.get_closest_marker("own_process") is not None:
        return
    backend = sys.modules.get("worker.backends.neonize")  # imported at collection by a test that uses it
    if backend is None:
        return

    def refuse(client: Any) -> Any:
        raise AssertionError("a neonize client in the suite's process: mark the test own_process (conftest.py)")

    monkeypatch.setattr(backend, "own", refuse)
