"""botvisor's public API for bot authors: ``from botvisor import Bot, filters``.

An app is a ``Bot`` with handlers; botvisor runs it inside the bot's own worker process
(docs/apps.md). ``botvisor.testing`` runs one in-process for tests.
"""

from __future__ import annotations

from . import filters
from .app import Bot
from .context import Command, Context, HandlerError
from .errors import AppDefinitionError, OperationError
from .state import StateError

__all__ = ["Bot", "filters", "Context", "Command", "HandlerError", "OperationError", "AppDefinitionError",
           "StateError"]
