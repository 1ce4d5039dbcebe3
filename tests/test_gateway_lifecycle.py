"""The gateway started before the supervisor: not ready and 503 ``no-supervisor``, then ready
and serving once the supervisor comes up (it connects by itself)."""

from __future__ import annotations

import httpx
import pytest

from .gateway_harness import GatewayProcess, add_key, configure, stack_fixture, wait_until

pytestmark = pytest.mark.slow
stack = stack_fixture()


def test_a_gateway_started_first_waits_for_the_supervisor(stack, fleet_factory):
    fleet = fleet_factory(["b1"])
    port = configure(fleet, [], command_timeout=0.5)
    key = add_key(fleet, "admin")
    gw = GatewayProcess(fleet, port)
    stack.gateways.append(gw)
    wait_until(lambda: _get(gw.base + "/healthz") == 200, 30, "the gateway answering")
    assert _get(gw.base + "/readyz") == 503
    r = httpx.get(gw.base + "/v1/status", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    assert r.status_code == 503 and r.json()["error"]["code"] == "no-supervisor"
    service = stack.supervisor(fleet)
    stack.start_bots(service)
    wait_until(lambda: _get(gw.base + "/readyz") == 200, 20, "ready once the supervisor is up")
    status = httpx.get(gw.base + "/v1/status", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
    assert [b["bot_id"] for b in status["bots"]] == ["b1"]


def _get(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
