"""The dashboard's pure parts: rows, sorting, filters, formats, sessions and the CSRF check."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from gateway.dashboard import session as sessions
from gateway.dashboard.views import FleetQuery, age, fleet_row, public_url, readable, send_outcomes, size
from gateway.keys import ApiKey


def entry(bot: str, state: str = "running", restarts: int = 0, **more: object) -> dict[str, object]:
    return {"bot_id": bot, "container_state": state, "bot_status": "online", "restarts": restarts, "pid": 10,
            "uptime": 5.0, "last_heartbeat": "2026-12-01T10:00:00.000Z", "rss": 3 << 20, "events_lost": 0,
            "reason": "worker said hello", "is_healthy": True, **more}


def rows() -> list:
    return [fleet_row(entry("sales-1", restarts=2), False), fleet_row(entry("sales-2", "backoff", 5), False),
            fleet_row(entry("ops", restarts=1), True), fleet_row(entry("old", "stopped", 9), True)]


def test_filters_by_state_by_id_and_by_pairing() -> None:
    ids = lambda q: [r.id for r in q.apply(rows())]  # noqa: E731
    assert ids(FleetQuery.parse({"state": "backoff"})) == ["sales-2"]
    assert ids(FleetQuery.parse({"q": "sales"})) == ["sales-1", "sales-2"]
    assert ids(FleetQuery.parse({"q": "*-2"})) == ["sales-2"]
    assert ids(FleetQuery.parse({"q": "SALES-1"})) == ["sales-1"]
    # a stopped bot's old QR is no reason to stand out: only a running one needs pairing
    assert ids(FleetQuery.parse({"state": "pairing"})) == ["ops"]


def test_sorts_and_refuses_unknown_columns() -> None:
    assert [r.id for r in FleetQuery.parse({"sort": "restarts", "desc": "1"}).apply(rows())] == \
        ["old", "sales-2", "sales-1", "ops"]
    assert [r.id for r in FleetQuery.parse({}).apply(rows())] == ["old", "ops", "sales-1", "sales-2"]
    bad = FleetQuery.parse({"sort": "__class__", "state": "<script>"})
    assert (bad.sort, bad.state) == ("id", "")
    assert FleetQuery(sort="restarts").sort_link("restarts") == "sort=restarts&desc=1"
    assert FleetQuery(sort="restarts", desc=True).sort_link("memory") == "sort=memory"


def test_a_stopped_bot_has_no_uptime_or_heartbeat_age() -> None:
    row = fleet_row(entry("b", "stopped"), False, now=0)
    assert row.uptime is None and row.heartbeat_ts is None and row.heartbeat_age is None


def test_formats() -> None:
    assert [age(x) for x in (None, 0.25, 42, 125, 7300, 200000)] == \
        ["–", "0.2 s", "42 s", "2 min 5 s", "2 h 1 min", "2 d 7 h"]
    assert [size(x) for x in (None, 512, 3 << 20)] == ["–", "512 B", "3.0 MiB"]
    assert readable({"qr": "2@x", "n": 1, "gone": None, "nested": {"a": [1]}}) == \
        [("qr", "2@x"), ("n", "1"), ("nested", '{"a": [1]}')]


def test_a_send_shows_its_latest_outcome_from_the_history() -> None:
    history = [{"type": "send-status", "data": {"id": "s1", "state": "sent"}},
               {"type": "message-upsert", "data": {"id": "s2"}},
               {"type": "send-status", "data": {"id": "s2", "state": "failed", "reason": "not on WhatsApp"}}]
    assert send_outcomes(history) == {"s1": "sent", "s2": "failed (not on WhatsApp)"}


def test_webhook_urls_lose_what_may_be_a_secret() -> None:
    assert public_url("https://user:pw@hooks.example:8443/in?token=abc#x") == "https://hooks.example:8443/in?…"
    assert public_url("http://127.0.0.1:9000/hook") == "http://127.0.0.1:9000/hook"


def test_sessions_expire_when_idle_and_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    store = sessions.Sessions()
    key = ApiKey("admin", "0" * 64)
    clock = [1000.0]
    monkeypatch.setattr(sessions.time, "time", lambda: clock[0])
    s = store.create(key)
    assert store.get(s.token) is s and s.token != s.csrf
    clock[0] += sessions.IDLE - 1
    assert store.get(s.token) is s  # used: the idle clock restarts
    clock[0] += sessions.IDLE + 1
    assert store.get(s.token) is None and store.get(s.token) is None
    monkeypatch.setattr(sessions, "MAX_SESSIONS", 3)
    made = [store.create(key) for _ in range(5)]
    assert [store.get(m.token) is not None for m in made] == [False, False, True, True, True]


def request(headers: dict[str, str], scheme: str = "http") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in {"host": "127.0.0.1:8780", **headers}.items()]
    return Request({"type": "http", "method": "POST", "scheme": scheme, "path": "/ui/x", "headers": raw,
                    "query_string": b"", "server": ("127.0.0.1", 8780)})


@pytest.mark.parametrize(("headers", "presented", "refused"), [
    ({"origin": "http://127.0.0.1:8780"}, "tok", None),
    ({}, "tok", None),  # no Origin, no Referer (not a browser): the token decides
    ({"referer": "http://127.0.0.1:8780/ui/bots/b1"}, "tok", None),
    ({"origin": "http://127.0.0.1:8780"}, None, "missing"),
    ({"origin": "http://127.0.0.1:8780"}, "tik", "does not match"),
    ({"origin": "http://evil.example"}, "tok", "another site"),
    ({"origin": "null"}, "tok", "another site"),
    ({"origin": "https://127.0.0.1:8780"}, "tok", "another site"),  # another scheme is another origin
    # behind a TLS proxy that says what the browser used
    ({"origin": "https://dash.example", "x-forwarded-proto": "https", "x-forwarded-host": "dash.example"}, "tok", None),
    ({"origin": "https://evil.example", "x-forwarded-proto": "https", "x-forwarded-host": "dash.example"}, "tok",
     "another site"),
])
def test_csrf_check(headers: dict[str, str], presented: str | None, refused: str | None) -> None:
    if refused is None:
        sessions.check_csrf(request(headers), "tok", presented)
    else:
        with pytest.raises(sessions.CsrfRefused, match=refused):
            sessions.check_csrf(request(headers), "tok", presented)


def test_the_cookie_is_secure_when_the_browser_used_tls() -> None:
    from fastapi.responses import Response

    for headers, secure in (({}, False), ({"x-forwarded-proto": "https"}, True)):
        response = Response()
        sessions.set_cookie(response, request(headers), sessions.COOKIE, "t", None)
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/ui" in cookie
        assert ("Secure" in cookie) is secure
    response = Response()
    sessions.set_cookie(response, request({}, scheme="https"), sessions.COOKIE, "t", None)
    assert "Secure" in response.headers["set-cookie"]
