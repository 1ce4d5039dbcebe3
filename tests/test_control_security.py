"""Security of the operator endpoints: tcp:// only with CURVE keys, unknown keys refused, and a
tap endpoint that cannot be used to issue commands. Loopback only (127.0.0.1)."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time

import pytest
import zmq

from protocol import ContainerState, StateChange
from protocol.client import AuthenticationFailed, ControlClient, NotRunning
from protocol.config import ConfigError, load_config
from protocol.control import Request, encode_request
from protocol.curve import ClientKeys, generate

from .harness import REPO, Service
from .terminal import botvisor


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def secure_fleet(fleet_factory, tmp_path, **security: str):
    keys = tmp_path / "keys"
    generate(keys, "server")
    generate(keys / "clients", "operator")
    generate(tmp_path / "elsewhere", "stranger")
    fleet = fleet_factory([{"id": "b1", "autostart": True}])
    settings = {"server_key": str(keys / "server.key_secret"), "authorized_keys": str(keys / "clients"),
                "client_key": str(keys / "clients" / "operator.key_secret"), **security}
    fleet.extra = (f'[endpoints]\ncontrol = "tcp://127.0.0.1:{free_port()}"\ntap = "tcp://127.0.0.1:{free_port()}"\n'
                   "[security]\n" + "".join(f'{k} = "{v}"\n' for k, v in settings.items()))
    fleet.write()
    return fleet, keys


def wait_for_supervisor(client: ControlClient, service: Service, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        assert service.proc.poll() is None, f"the supervisor exited:\n{service.log()[-2000:]}"
        try:
            return client.call("ping", timeout=0.5)
        except NotRunning:
            if time.monotonic() > deadline:
                raise


def test_tcp_control_or_tap_is_refused_without_curve_keys(fleet_factory):
    for role in ("control", "tap"):
        fleet = fleet_factory(["b1"])
        fleet.extra = f'[endpoints]\n{role} = "tcp://127.0.0.1:{free_port()}"\n'
        fleet.write()
        with pytest.raises(ConfigError, match=f"endpoints.{role}: a tcp:// endpoint needs CURVE keys"):
            load_config(fleet.config_path)
        done = subprocess.run(botvisor("run", "-c", str(fleet.config_path)), cwd=REPO, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 78 and "needs CURVE keys" in done.stderr
        checked = subprocess.run(botvisor("check-config", "-c", str(fleet.config_path)), cwd=REPO,
                                 capture_output=True, text=True, timeout=30)
        assert checked.returncode == 78 and "needs CURVE keys" in checked.stderr


def test_a_key_file_that_does_not_load_is_refused(fleet_factory, tmp_path):
    fleet, keys = secure_fleet(fleet_factory, tmp_path)
    (keys / "server.key_secret").write_text("not a key\n")
    with pytest.raises(ConfigError, match="security.server_key"):
        load_config(fleet.config_path)


def test_keys_generate_writes_a_pair_and_never_overwrites(tmp_path):
    done = subprocess.run(botvisor("keys", "generate", "--dir", str(tmp_path / "k"), "--name", "ops"), cwd=REPO,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    public, secret = tmp_path / "k" / "ops.key", tmp_path / "k" / "ops.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pub, sec = zmq.auth.load_certificate(str(secret))
    assert zmq.auth.load_certificate(str(public))[0] == pub and sec
    again = subprocess.run(botvisor("keys", "generate", "--dir", str(tmp_path / "k"), "--name", "ops"), cwd=REPO,
                           capture_output=True, text=True, timeout=30)
    assert again.returncode == 1 and "not overwriting" in again.stderr
    assert zmq.auth.load_certificate(str(secret))[1] == sec


@pytest.mark.parametrize("pinned", [False, True], ids=["server-key-from-pair", "server_public_key"])
def test_curve_admits_the_authorised_key_and_refuses_an_unknown_one(fleet_factory, tmp_path, pinned):
    extra = {"server_public_key": str(tmp_path / "keys" / "server.key")} if pinned else {}
    fleet, keys = secure_fleet(fleet_factory, tmp_path, **extra)
    config = load_config(fleet.config_path)
    service = Service(fleet)
    try:
        with ControlClient.for_config(config) as client:
            assert wait_for_supervisor(client, service)["pid"] == service.pid
        # the CLI, over tcp with the config's client key: status and a tap
        status = subprocess.run(botvisor("status", "-c", str(fleet.config_path), "--json"), cwd=REPO,
                                capture_output=True, text=True, timeout=30)
        assert json.loads(status.stdout)["pid"] == service.pid
        tapped = subprocess.run(botvisor("tap", "-c", str(fleet.config_path), "--type", "heartbeat", "--count", "2",
                                         "--timeout", "20"), cwd=REPO, capture_output=True, text=True, timeout=30)
        assert tapped.returncode == 0 and tapped.stdout.count("heartbeat") == 2
        # a key the supervisor does not know is refused, and the client says so
        stranger_pub, stranger_sec = zmq.auth.load_certificate(str(tmp_path / "elsewhere" / "stranger.key_secret"))
        server_pub, _ = zmq.auth.load_certificate(str(keys / "server.key"))
        endpoint = config.endpoint("control")
        with ControlClient(endpoint, timeout=1.0, curve=ClientKeys(stranger_pub, stranger_sec, server_pub)) as bad:
            with pytest.raises(AuthenticationFailed, match="refused our CURVE key"):
                bad.call("stop", {"all": True})
        with ControlClient(endpoint, timeout=1.0) as plain:  # no CURVE at all
            with pytest.raises(NotRunning):
                plain.call("stop", {"all": True})
        strange_tap = subprocess.run(
            botvisor("tap", "--endpoint", config.endpoint("tap"), "--timeout", "1"), cwd=REPO, capture_output=True,
            text=True, timeout=30, env={**os.environ, "BOTVISOR_CONFIG": str(tmp_path / "none.toml")})
        assert strange_tap.returncode == 1 and strange_tap.stdout == "", "a tap without the key sees nothing"
        with ControlClient.for_config(config) as client:
            bots = client.call("status")["bots"]
        assert bots[0]["container_state"] == "running", "the refused stop did nothing"
    finally:
        service.cleanup()


def test_the_tap_endpoint_cannot_issue_commands(fleet_factory, launch):
    fleet = fleet_factory(["b1"])
    service, tap = launch(fleet)
    running = tap.wait_for(lambda m: isinstance(m, StateChange) and m.state is ContainerState.RUNNING,
                           what="b1 running")
    context = zmq.Context.instance()
    # an XSUB can put arbitrary frames on an XPUB; the supervisor reads them as subscriptions only
    sender = context.socket(zmq.XSUB)
    sender.setsockopt(zmq.LINGER, 0)
    sender.connect(fleet.endpoint("tap"))
    # a DEALER or PUB does not even get a connection: ZeroMQ refuses the socket type pair
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(fleet.endpoint("tap"))
    try:
        stop_all = encode_request(Request("evil", "stop", {"all": True}))
        for _ in range(20):
            sender.send_multipart([stop_all])
            sender.send(b"\x01" + stop_all)  # a "subscription" that happens to hold a request
            dealer.send(stop_all, zmq.NOBLOCK) if dealer.poll(0, zmq.POLLOUT) else None
        assert not dealer.poll(500), "the tap endpoint must never answer"
        # the control endpoint is the only way in: a ping there is answered, and nothing was stopped
        status = service.control("status")
        assert status["bots"][0]["container_state"] == "running" and status["bots"][0]["pid"] == running.pid
        assert service.proc.poll() is None
    finally:
        sender.close(0)
        dealer.close(0)
