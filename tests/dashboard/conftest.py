"""Fixtures of the dashboard's browser tests: Debian's chromium driven by Playwright.

Playwright runs the system browser (``/usr/bin/chromium``), never one it downloads. Every
launch gets a fresh profile directory (Playwright makes one per launch and deletes it).
Outside CI, a machine without chromium or Playwright skips these tests, saying why; in CI
(``CI=true``, where .ci/run installs both) they must run, so there the same gap fails.
Each test that fails leaves a screenshot of its page in ``.artifacts/dashboard/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from ..harness import REPO
from .stack import Stack, start_stack

CHROMIUM = os.environ.get("BOTVISOR_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = REPO / ".artifacts" / "dashboard"
#: where the docs' screenshots go when BOTVISOR_DOC_SCREENSHOTS=1 (docs/dashboard.md shows them)
DOC_IMAGES = REPO / "docs" / "img"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        return f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"
    return None


# module, not session: playwright's sync API keeps an asyncio loop running on the main thread
# while it is open, and any later test's asyncio.run() would then fail
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI: {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS, chromium_sandbox=False)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    bots = [
        {"id": "b1", "simulated": {"paired": True}},
        {"id": "b2", "simulated": {"paired": True}},
        {"id": "b3", "simulated": {"paired": True}},
        # started by the pairing test: QR codes every 0.6 s, paired 4 s after it starts
        {"id": "pairme", "simulated": {"paired": False, "qr_every": 0.6, "pair_after": 4.0}},
        # started by the pair-code test: pairs by phone number (a pair code after the first QR), paired 8 s on
        {"id": "phoner", "phone_number": "15551234567",
         "simulated": {"paired": False, "qr_every": 0.6, "pair_after": 8.0}},
    ]
    stack = start_stack(tmp_path_factory.mktemp("dash"), bots, start=["b1", "b2", "b3"])
    try:
        yield stack
    finally:
        stack.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.stash[FAILED] = report.failed


FAILED = pytest.StashKey[bool]()


@pytest.fixture
def context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context (no cookies) at desktop width; a screenshot of each page on failure."""
    ctx = browser.new_context(viewport=DESKTOP)
    ctx.set_default_timeout(10_000)
    try:
        yield ctx
    finally:
        if request.node.stash.get(FAILED, True):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
            for i, pg in enumerate(ctx.pages):
                try:
                    path = ARTIFACTS / f"{name}-{i}.png"
                    pg.screenshot(path=str(path), full_page=True)
                    print(f"screenshot of the failed test's page: {path}")
                except Exception as exc:  # the page may be gone; the failure itself matters more
                    print(f"no screenshot: {exc}")
        ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    return context.new_page()


def sign_in(page: Any, stack: Stack, key: str = "admin", path: str = "/ui/") -> None:
    page.goto(stack.base + path)
    page.get_by_label("API key").fill(stack.keys[key])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(re.escape(stack.base + path) + r"$"))


def doc_screenshot(page: Any, name: str, **options: Any) -> None:
    """Save a screenshot for docs/dashboard.md, only when asked (a test run never edits the tree)."""
    if os.environ.get("BOTVISOR_DOC_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_IMAGES / f"{name}.png"), **options)

