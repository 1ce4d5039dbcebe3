"""Errors a bot author meets."""

from __future__ import annotations


class BotvisorAppError(Exception):
    """Base of the errors botvisor raises into app code."""


class OperationError(BotvisorAppError):
    """A bot operation (send, react, ...) failed or does not exist on this backend; says which and why."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"{operation}: {reason}")
        self.operation, self.reason = operation, reason


class AppDefinitionError(BotvisorAppError, TypeError):
    """A decorator was used wrongly (an unknown event type, a handler taking the wrong arguments)."""
