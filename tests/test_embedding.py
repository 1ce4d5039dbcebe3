"""The original API from Python: a Supervisor embedded in a program, listeners on its containers."""

from __future__ import annotations

import threading

from protocol import ContainerState
from protocol.config import load_config
from supervisor.arbiter import Supervisor

from .harness import alive, stop_embedded, wait_until


def test_a_program_can_embed_the_supervisor_and_listen_to_its_containers(fleet_factory):
    bots = [{"id": "emb", "autostart": True, "simulated": {"message_rate": 50.0}}]
    fleet = fleet_factory(bots)
    supervisor = Supervisor(load_config(fleet.config_path))
    container = supervisor.manager.get_bot_container("emb")
    messages, states = [], []
    container.on_container_event("message-upsert", messages.append)
    container.on("state", lambda event: states.append(event.data["state"]))
    thread = threading.Thread(target=supervisor.run, name="botvisor")
    thread.start()
    try:
        wait_until(lambda: len(messages) >= 3, timeout=20, what="three messages through the listener")
        assert container.is_container_healthy()
        assert supervisor.manager.get_container_event_history("emb", 2)[-1].type == "message-upsert"
        pid = container.get_status().pid
    finally:
        stop_embedded(supervisor, thread)
    assert not thread.is_alive()
    assert states[:2] == ["initializing", "running"] and states[-1] == "stopped"
    assert container.state is ContainerState.STOPPED
    assert not alive(pid)
