"""`python -m worker` runs one bot without botvisor (debugging, other process managers)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import zmq

from protocol import Bye, Hello, decode

from .harness import REPO


def test_a_standalone_worker_says_hello_and_stops_on_sigterm_with_bye_and_exit_0(fleet_factory):
    fleet = fleet_factory(["solo"])
    fleet.run_dir.mkdir(mode=0o700)
    context = zmq.Context()
    events = context.socket(zmq.SUB)  # stand in for the supervisor's end of the events endpoint
    events.setsockopt(zmq.SUBSCRIBE, b"")
    events.setsockopt(zmq.LINGER, 0)
    events.bind(fleet.endpoint("events"))
    proc = subprocess.Popen([sys.executable, "-m", "worker", "--config", str(fleet.config_path), "--bot", "solo"],
                            cwd=REPO, stderr=subprocess.PIPE, text=True)
    try:
        assert events.poll(20_000), "no message from the standalone worker"
        frames = events.recv_multipart()
        assert len(frames) == 3 and len(frames[2]) == 32, "topic, payload and a signature"
        hello = decode(frames[1])
        assert isinstance(hello, Hello) and hello.bot == "solo" and hello.pid == proc.pid and hello.seq == 0
        proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        bye = None
        while bye is None and events.poll(5000):
            message = decode(events.recv_multipart()[1])
            bye = message if isinstance(message, Bye) else None
        assert proc.wait(timeout=5) == 0
        assert time.monotonic() - signalled < 1.0
        assert bye is not None and bye.exit_code == 0 and "SIGTERM" in bye.reason
        assert fleet.bot_dir("solo").is_dir()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        events.close(0)
        context.term()


def test_a_standalone_worker_refuses_an_unknown_bot_with_exit_78(fleet_factory):
    fleet = fleet_factory(["solo"])
    result = subprocess.run([sys.executable, "-m", "worker", "--config", str(fleet.config_path), "--bot", "nobody"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 78 and "no bot 'nobody'" in result.stderr
