"""docs/webhooks.md's verification snippets, exactly as printed, accept what the gateway signs
and refuse a tampered body, a wrong secret and a stale timestamp; docs/configuration.md names
every [gateway] key."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import time

import pytest

from gateway.webhooks.signing import sign
from protocol.gateway_config import GatewaySettings, WebhookConfig, WebhookRetry

from .harness import REPO

DOC = (REPO / "docs" / "webhooks.md").read_text()
SECRET = b"s3cret"
BODY = json.dumps({"id": "evt_1", "text": "héllo"}, ensure_ascii=False).encode()


def snippet(language: str) -> str:
    return re.search(rf"```{language}\n(.*?)```", DOC, re.S).group(1)


def cases() -> list[tuple[bytes, bytes, str, bool]]:
    now = int(time.time())
    good = sign(SECRET, BODY, now)
    return [(SECRET, BODY, good, True), (SECRET, BODY + b" ", good, False), (b"other", BODY, good, False),
            (SECRET, BODY, sign(SECRET, BODY, now - 3600), False), (SECRET, BODY, "t=x,v1=00", False)]


def test_the_python_snippet_verifies_what_the_gateway_signs():
    scope: dict = {}
    exec(snippet("python"), scope)  # noqa: S102 - the documented code itself
    for secret, body, header, expected in cases():
        assert scope["verify"](secret, body, header) is expected, (body, header)


@pytest.mark.skipif(shutil.which("node") is None and os.environ.get("CI") != "true",
                    reason="node is not installed (.ci/run installs it; in CI this test must run)")
def test_the_node_snippet_verifies_what_the_gateway_signs():
    program = snippet("js") + """
const cases = JSON.parse(process.argv[1]);
console.log(JSON.stringify(cases.map(([s, b, h]) => verify(s, Buffer.from(b, "base64"), h))));
"""
    import base64

    data = [[s.decode(), base64.b64encode(b).decode(), h] for s, b, h, _ in cases()]
    out = subprocess.run(["node", "-e", program, json.dumps(data)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [expected for *_, expected in cases()]


def test_every_gateway_key_is_documented():
    doc = (REPO / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    for cls in (GatewaySettings, WebhookConfig, WebhookRetry):
        missing = {f.name for f in dataclasses.fields(cls)} - documented - {"webhooks", "retry"}
        assert not missing, f"{cls.__name__}: undocumented keys {sorted(missing)}"
