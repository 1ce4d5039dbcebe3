"""The documentation names every configuration key the loader accepts."""

from __future__ import annotations

import dataclasses
import re

from protocol.config import (
    BotConfig,
    Endpoints,
    MetricsSettings,
    SimulatedSettings,
    SupervisorSettings,
    WhatsAppSettings,
)
from supervisor.restart import RestartPolicy

from .harness import REPO


def test_every_configuration_key_is_documented():
    doc = (REPO / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    for cls in (SupervisorSettings, RestartPolicy, Endpoints, MetricsSettings, BotConfig, SimulatedSettings,
                WhatsAppSettings):
        missing = {f.name for f in dataclasses.fields(cls)} - documented - {"backoff", "simulated", "whatsapp"}
        assert not missing, f"{cls.__name__}: undocumented keys {sorted(missing)}"
