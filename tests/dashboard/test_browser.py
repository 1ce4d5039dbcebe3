"""The dashboard in a real browser against a real supervisor and gateway with simulated bots."""

from __future__ import annotations

import os
import re
import signal
import time
from typing import Any

import httpx
import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # outside CI only: there, .ci/run installs it and a gap must fail
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("Playwright for Python is not installed (pip install -e '.[test]')", allow_module_level=True)

from gateway.keys import KeyStore
from gateway.runtime import keys_path
from protocol.config import load_config

from .conftest import PHONE, doc_screenshot, sign_in
from .stack import SECRET, URL_TOKEN, Stack

pytestmark = pytest.mark.slow


def row(page: Any, bot: str) -> Any:
    return page.locator(f"#bot-{bot}")


def cell(page: Any, bot: str, field: str) -> Any:
    return row(page, bot).locator(f"[data-field={field}]")


def wait_live(page: Any) -> None:
    expect(page.locator("#live-state")).to_have_text("● live")


# -- sign-in -------------------------------------------------------------------------------
def test_pages_need_a_session_and_a_wrong_key_is_refused(page: Any, stack: Stack) -> None:
    for path in ("/ui/", "/ui/bots/b1", "/ui/webhooks"):
        response = page.goto(stack.base + path)
        assert page.url.startswith(stack.base + "/ui/login"), path
        assert response is not None and response.status == 200
    assert httpx.get(f"{stack.base}/ui/events", timeout=5).status_code == 401
    assert httpx.get(f"{stack.base}/ui/fleet/table", timeout=5, follow_redirects=False).status_code == 303

    page.get_by_label("API key").fill("bvk_not-a-key-of-this-gateway")
    with page.expect_response(lambda r: r.url.endswith("/ui/login") and r.request.method == "POST") as refused:
        page.get_by_role("button", name="Sign in").click()
    assert refused.value.status == 401
    expect(page.get_by_role("alert")).to_contain_text("not a valid API key")
    assert not [c for c in page.context.cookies() if c["name"] == "botvisor_session"]

    page.get_by_label("API key").fill(stack.keys["admin"])
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(stack.base + "/ui/webhooks")  # back where the redirect started
    cookie = next(c for c in page.context.cookies() if c["name"] == "botvisor_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert cookie["value"] != stack.keys["admin"] and stack.keys["admin"] not in page.content()
    headers = page.request.get(stack.base + "/ui/").headers
    assert headers["cache-control"] == "no-store" and headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in headers["content-security-policy"]


def test_sign_out_ends_the_session(page: Any, stack: Stack) -> None:
    sign_in(page, stack)
    old = next(c for c in page.context.cookies() if c["name"] == "botvisor_session")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(stack.base + "/ui/login")
    page.goto(stack.base + "/ui/")
    assert page.url.startswith(stack.base + "/ui/login")
    # the old cookie is dead on the server too, not only forgotten by the browser
    r = httpx.get(f"{stack.base}/ui/", cookies={"botvisor_session": old["value"]}, follow_redirects=False, timeout=5)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")
    before = stack.status("b1")["pid"]
    r = httpx.post(f"{stack.base}/ui/bots/b1/stop", cookies={"botvisor_session": old["value"]},
                   data={"csrf": "whatever"}, follow_redirects=False, timeout=5)
    assert r.status_code == 303 and r.headers["location"] == "/ui/login"
    assert stack.status("b1")["pid"] == before


def test_revoking_the_key_sends_an_open_page_to_the_sign_in_page(page: Any, stack: Stack) -> None:
    store = KeyStore(keys_path(load_config(stack.fleet.config_path)))
    stack.keys["temp"] = store.add("temp")
    sign_in(page, stack, key="temp")
    wait_live(page)
    store.revoke("temp")
    page.wait_for_url(re.compile(re.escape(stack.base) + r"/ui/login"), timeout=10_000)  # no click needed
    r = page.request.get(stack.base + "/ui/", max_redirects=0)
    assert r.status == 303


# -- fleet ---------------------------------------------------------------------------------
def test_fleet_lists_every_bot_with_counts_sorting_and_filters(page: Any, stack: Stack) -> None:
    sign_in(page, stack)
    for bot in ("b1", "b2", "b3", "pairme", "phoner"):
        expect(row(page, bot)).to_be_visible()
    for bot in ("b1", "b2", "b3"):
        expect(cell(page, bot, "state")).to_have_text("running")
        expect(cell(page, bot, "pid")).to_have_text(str(stack.status(bot)["pid"]))
    expect(cell(page, "pairme", "state")).to_have_text("stopped")
    expect(page.locator("[data-count=running]")).to_have_text("3")
    expect(page.locator("[data-count=stopped]")).to_have_text("2")
    wait_live(page)

    page.get_by_label("State", exact=True).select_option("stopped")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#fleet-rows tr")).to_have_count(2)
    expect(row(page, "pairme")).to_be_visible()
    page.goto(stack.base + "/ui/")
    page.get_by_label("Bot id").fill("b*")
    page.get_by_label("Bot id").press("Enter")
    expect(page.locator("#fleet-rows tr[data-bot]")).to_have_count(3)

    page.goto(stack.base + "/ui/")
    page.keyboard.press("Tab")  # the keyboard's first stop skips the header to the content
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#main")).to_be_focused()
    page.get_by_role("link", name="Bot", exact=True).click()  # sorted by id: clicking again flips it
    assert [b for b in page.locator("#fleet-rows tr").evaluate_all("rs => rs.map(r => r.dataset.bot)")] == \
        ["phoner", "pairme", "b3", "b2", "b1"]
    expect(page.locator("th[aria-sort=descending]")).to_contain_text("Bot")


def test_a_killed_worker_shows_its_restart_within_two_seconds(page: Any, stack: Stack) -> None:
    sign_in(page, stack)
    wait_live(page)
    before = stack.status("b3")
    expect(cell(page, "b3", "pid")).to_have_text(str(before["pid"]))
    row(page, "b3").get_by_role("link", name="b3").focus()
    os.kill(before["pid"], signal.SIGKILL)
    killed = time.monotonic()
    expect(cell(page, "b3", "restarts")).to_have_text(str(before["restarts"] + 1), timeout=2000)
    expect(cell(page, "b3", "state")).to_have_text("running", timeout=max(1, 2000 - (time.monotonic() - killed) * 1000))
    elapsed = time.monotonic() - killed
    new_pid = stack.status("b3")["pid"]
    stack.service.descendants()  # the new worker is ours to reap
    assert new_pid != before["pid"]
    expect(cell(page, "b3", "pid")).to_have_text(str(new_pid))
    assert elapsed < 2.0, f"the page showed the restart {elapsed:.2f} s after the kill"
    expect(row(page, "b3").get_by_role("link", name="b3")).to_be_focused()  # the refresh kept the focus
    uptime = float(page.locator("#bot-b3 [data-field=uptime]").get_attribute("data-since"))
    assert uptime > time.time() - 5  # its uptime restarted with the new worker


def test_the_fleet_is_readable_at_phone_width(page: Any, stack: Stack) -> None:
    page.set_viewport_size(PHONE)
    sign_in(page, stack)
    expect(row(page, "b1")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= PHONE["width"], f"the page is {overflow} px wide at {PHONE['width']} px"
    expect(page.get_by_text("Restarts").first).to_be_visible()  # each row labels its values
    doc_screenshot(page, "dashboard-fleet-phone")
    for path in ("/ui/bots/b1", "/ui/webhooks"):
        page.goto(stack.base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide at {PHONE['width']} px"


# -- one bot -------------------------------------------------------------------------------
def test_an_unpaired_bot_shows_a_changing_qr_then_hides_it_once_paired(context: Any, stack: Stack) -> None:
    fleet = context.new_page()
    sign_in(fleet, stack)
    wait_live(fleet)
    page = context.new_page()
    page.goto(stack.base + "/ui/bots/pairme")
    wait_live(page)
    expect(page.locator("#pairing")).to_be_hidden()
    stack.service.control("start", {"bots": ["pairme"]})
    # the fleet page singles it out while it waits for a scan
    expect(row(fleet, "pairme")).to_have_class(re.compile(r"\bneeds-pairing\b"), timeout=3000)
    expect(fleet.locator("[data-count=pairing]")).to_have_text("1")
    doc_screenshot(fleet, "dashboard-fleet")
    qr = page.locator("#qr svg")
    expect(qr).to_be_visible(timeout=3000)
    first = page.locator("#qr").get_attribute("data-qr-ref")
    expect(page.locator("#qr")).not_to_have_attribute("data-qr-ref", first, timeout=3000)  # a new QR drawn
    doc_screenshot(page, "dashboard-pairing", full_page=False)
    expect(page.locator("#live-events")).to_contain_text("connection-update")  # live events, as they come
    expect(page.locator("#pairing")).to_be_hidden(timeout=8000)
    expect(page.locator("#paired")).to_be_visible()
    stack.service.descendants()
    expect(page.locator("#status [data-field=whatsapp]")).to_contain_text("online", timeout=5000)
    expect(row(fleet, "pairme")).not_to_have_class(re.compile(r"\bneeds-pairing\b"))
    # a reload draws no QR either (the gateway knows it is paired); the history is newest first
    page.reload()
    expect(page.locator("#pairing")).to_be_hidden()
    heads = page.locator("#history .event-head .muted").all_inner_texts()
    seqs = [int(re.search(r"seq (\d+)", h).group(1)) for h in heads]
    assert len(seqs) > 3 and seqs == sorted(seqs, reverse=True), seqs
    expect(page.locator("#history")).to_contain_text("qr")  # each event's data readable


def test_a_bot_pairing_by_phone_number_shows_its_pair_code_by_the_qr_until_paired(page: Any, stack: Stack) -> None:
    sign_in(page, stack, path="/ui/bots/phoner")
    wait_live(page)
    expect(page.locator("#pairing")).to_be_hidden()
    stack.service.control("start", {"bots": ["phoner"]})
    pairing = page.get_by_role("region", name="Pairing")
    code = pairing.get_by_label("Phone pairing code")  # readable text with its accessible name, by the QR
    expect(code).to_have_text(re.compile(r"^[A-Z0-9]{4}-[A-Z0-9]{4}$"), timeout=5000)
    expect(pairing.get_by_role("img", name="WhatsApp pairing QR code")).to_be_visible()
    shown = code.inner_text()
    history = stack.service.control("history", {"bot": "phoner"})["events"]
    assert [e["data"]["pair_code"] for e in history if e["data"].get("pair_code")] == [shown], \
        "the page shows the code the bot emitted"
    # the QR changes, the code stays; a reload draws both again
    first = page.locator("#qr").get_attribute("data-qr-ref")
    expect(page.locator("#qr")).not_to_have_attribute("data-qr-ref", first, timeout=3000)
    expect(code).to_have_text(shown)
    page.reload()
    expect(code).to_have_text(shown)
    expect(pairing.get_by_role("img", name="WhatsApp pairing QR code")).to_be_visible()
    wait_live(page)
    # once paired: no QR, no code
    expect(page.locator("#pairing")).to_be_hidden(timeout=15_000)
    expect(page.locator("#paired")).to_be_visible()
    stack.service.descendants()
    expect(page.get_by_label("Phone pairing code")).to_be_hidden()
    expect(page.locator("#pair-code-value")).to_have_text("")  # gone, not only out of sight
    expect(page.locator("#qr svg")).to_have_count(0)
    page.reload()  # nor after a reload (the event history below still lists the code it had)
    expect(page.locator("#pairing")).to_be_hidden()
    expect(page.locator("#pair-code-value")).to_have_text("")


def test_the_send_form_sends_and_shows_the_outcome(page: Any, stack: Stack) -> None:
    sign_in(page, stack, path="/ui/bots/b1")
    page.get_by_role("textbox", name=re.compile(r"^To ")).fill("15551234567@s.whatsapp.net")
    page.get_by_role("textbox", name="Text", exact=True).fill("hello from the dashboard")
    page.get_by_role("button", name="Send", exact=True).click()
    outcome = page.locator(".send-outcome")
    expect(outcome).to_be_visible()
    send_id = outcome.get_attribute("data-send-id")
    assert send_id and send_id != "?"
    expect(outcome.locator("[data-outcome]")).to_have_text(re.compile(r"^(sent|queued)$"))
    expect(outcome).to_contain_text(send_id)
    page.evaluate("window.scrollTo(0, 0)")
    doc_screenshot(page, "dashboard-bot", full_page=False)

    # a send the worker refuses shows why (here: a bot that is not running), nothing is lost silently
    page.goto(stack.base + "/ui/bots/b1/confirm/stop")
    page.get_by_role("button", name="Stop b1").click()
    expect(page.locator("#status [data-field=state]")).to_have_text("stopped", timeout=5000)
    page.get_by_role("textbox", name=re.compile(r"^To ")).fill("15551234567@s.whatsapp.net")
    page.get_by_role("textbox", name="Text", exact=True).fill("nobody will send this")
    page.get_by_role("button", name="Send", exact=True).click()
    expect(page.locator(".flashes .flash.error")).to_contain_text("Send refused")
    stack.service.control("start", {"bots": ["b1"]})
    stack.tap.wait_for(lambda m: type(m).__name__ == "Hello" and m.bot == "b1", timeout=10, what="b1 again",
                       history=False)
    stack.service.descendants()


def test_stop_and_start_from_the_page_change_the_state(page: Any, stack: Stack) -> None:
    sign_in(page, stack, path="/ui/bots/b2")
    wait_live(page)
    state = page.locator("#status [data-field=state]")
    expect(state).to_have_text("running")
    page.get_by_role("button", name="Stop…", exact=True).click()
    expect(page.get_by_role("heading", name="Stop b2?")).to_be_visible()
    page.get_by_role("button", name="Stop b2").click()
    page.wait_for_url(stack.base + "/ui/bots/b2")
    expect(page.locator(".flashes .flash.ok")).to_contain_text("Stop b2: running →")
    expect(state).to_have_text("stopped", timeout=5000)  # live: the page was not reloaded
    assert stack.status("b2")["container_state"] == "stopped"

    page.get_by_role("button", name="Start…", exact=True).focus()
    page.keyboard.press("Enter")  # the keyboard works as well as the mouse
    page.get_by_role("button", name="Start b2").click()
    page.wait_for_url(stack.base + "/ui/bots/b2")
    expect(state).to_have_text("running", timeout=5000)
    stack.service.descendants()
    assert stack.status("b2")["container_state"] == "running"


def test_cancel_on_a_confirmation_does_nothing(page: Any, stack: Stack) -> None:
    sign_in(page, stack, path="/ui/bots/b1")
    before = stack.status("b1")
    page.get_by_role("button", name="Restart…", exact=True).click()
    page.get_by_role("link", name="Cancel").click()
    page.wait_for_url(stack.base + "/ui/bots/b1")
    after = stack.status("b1")
    assert (after["pid"], after["restarts"]) == (before["pid"], before["restarts"])


# -- CSRF, scope, secrets ------------------------------------------------------------------
def test_a_request_without_the_csrf_token_is_refused(page: Any, stack: Stack) -> None:
    sign_in(page, stack, path="/ui/bots/b1")
    token = page.locator("input[name=csrf]").first.input_value()
    pid = stack.status("b1")["pid"]
    post = page.context.request.post  # the session's cookie goes along, as a forged form's would
    for form, headers in (({}, {}), ({"csrf": "forged"}, {}),
                          ({"csrf": token}, {"Origin": "http://evil.example"})):
        r = post(f"{stack.base}/ui/bots/b1/stop", form=form, headers=headers, max_redirects=0)
        assert r.status == 403, (form, headers, r.status)
        assert "CSRF" in r.text() or "another site" in r.text()
    r = post(f"{stack.base}/ui/bots/b1/send", form={"to": "1@s.whatsapp.net", "text": "x"}, max_redirects=0)
    assert r.status == 403
    r = post(f"{stack.base}/ui/logout", form={}, max_redirects=0)
    assert r.status == 403
    status = stack.status("b1")
    assert status["container_state"] == "running" and status["pid"] == pid
    # the sign-in form is protected too (no pre-session cookie/token pair: refused)
    r = httpx.post(f"{stack.base}/ui/login", data={"key": stack.keys["admin"]}, timeout=5)
    assert r.status_code == 403


def test_a_key_scope_limits_what_pages_show_and_allow(browser: Any, stack: Stack) -> None:
    ctx = browser.new_context()
    try:
        page = ctx.new_page()
        sign_in(page, stack, key="only-b1")
        expect(page.locator("#fleet-rows tr[data-bot]")).to_have_count(1)
        expect(row(page, "b1")).to_be_visible()
        expect(page.get_by_role("link", name="Webhooks")).to_have_count(0)
        assert page.goto(stack.base + "/ui/bots/b2").status == 403
        assert page.goto(stack.base + "/ui/webhooks").status == 403
        ctx.clear_cookies()

        sign_in(page, stack, key="reader", path="/ui/bots/b1")
        expect(page.get_by_role("button", name="Stop…", exact=True)).to_have_count(0)
        expect(page.get_by_role("button", name="Send", exact=True)).to_have_count(0)
        token = page.locator("input[name=csrf]").first.input_value()  # the sign-out form's
        r = ctx.request.post(f"{stack.base}/ui/bots/b1/stop", form={"csrf": token}, max_redirects=0)
        assert r.status == 403 and "read-only" in r.text()
        assert stack.status("b1")["container_state"] == "running"
    finally:
        ctx.close()


def test_no_page_shows_a_secret(page: Any, stack: Stack) -> None:
    sign_in(page, stack)
    keys = list(stack.keys.values())
    for path in ("/ui/", "/ui/bots/b1", "/ui/bots/pairme", "/ui/webhooks", "/ui/fleet/table"):
        page.goto(stack.base + path)
        html = page.content()
        assert not any(k in html for k in keys), path
        assert SECRET not in html and URL_TOKEN not in html, path


# -- webhooks ------------------------------------------------------------------------------
def test_webhooks_show_endpoints_and_dead_letters_with_retry_and_purge(page: Any, stack: Stack) -> None:
    old = stack.status("b1")["pid"]
    stack.service.control("restart", {"bots": ["b1"]})  # state changes of b1: refused (400) -> dead letters
    stack.tap.wait_for(lambda m: type(m).__name__ == "Hello" and m.bot == "b1" and m.pid != old, timeout=10,
                       what="b1's new worker", history=False)
    stack.service.descendants()
    sign_in(page, stack, path="/ui/webhooks")
    endpoint = page.locator("#endpoint-crm")
    expect(endpoint).to_contain_text("active")
    expect(endpoint).to_contain_text("http://127.0.0.1")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the receiver refuses each delivery once: then it is dead
        page.reload()
        dead = int(endpoint.locator("td[data-label='Dead letters']").inner_text())
        if dead >= 2:
            break
        time.sleep(0.2)
    assert dead >= 2, "the refused deliveries never reached the dead letters"
    expect(page.locator("#dead tbody tr")).to_have_count(dead)
    expect(page.locator("#dead tbody")).to_contain_text("HTTP 400")

    refused = len(stack.receiver.requests)
    endpoint.get_by_role("button", name="Retry all").click()
    flash = page.locator(".flashes .flash.ok")
    expect(flash).to_contain_text("dead letters queued again")
    dead = int(re.match(r"(\d+) dead letters", flash.inner_text()).group(1))  # more may have died meanwhile
    wait_until_count = time.monotonic() + 10
    while len(stack.receiver.requests) < refused + dead and time.monotonic() < wait_until_count:
        time.sleep(0.05)
    assert len(stack.receiver.requests) >= refused + dead, "the retried deliveries were not attempted again"

    endpoint.get_by_role("button", name="Pause").click()
    expect(endpoint).to_contain_text("paused")
    endpoint.get_by_role("button", name="Resume").click()
    expect(endpoint).to_contain_text("active")

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        page.reload()
        if int(endpoint.locator("td[data-label='Dead letters']").inner_text()) >= dead:
            break
        time.sleep(0.2)
    endpoint.get_by_role("button", name="Purge all…").click()
    page.get_by_role("button", name="Purge", exact=True).click()
    expect(page.locator(".flashes .flash.ok")).to_contain_text("purged")
    expect(page.locator("#dead")).to_contain_text("No dead letter")
    expect(endpoint.locator("td[data-label='Dead letters']")).to_have_text("0")


def test_logout_from_the_page_logs_the_bot_out(page: Any, stack: Stack) -> None:
    sign_in(page, stack, path="/ui/bots/b3")
    wait_live(page)
    page.get_by_role("button", name="Log out of WhatsApp…").click()
    expect(page.get_by_role("heading", name="Log b3 out of WhatsApp?")).to_be_visible()
    expect(page.get_by_text("must be paired again")).to_be_visible()
    page.get_by_role("button", name="Log out b3").click()
    page.wait_for_url(stack.base + "/ui/bots/b3")
    expect(page.locator(".flashes .flash.ok")).to_contain_text("b3 logged out of WhatsApp")
    expect(page.locator("#history")).to_contain_text("logged-out")
    stack.service.descendants()
    # a logged-out session is fatal for the worker: the supervisor does not restart it
    expect(page.locator("#status [data-field=state]")).to_have_text("failed", timeout=5000)
    expect(page.locator("#status [data-field=reason]")).to_contain_text("pair the bot again")
