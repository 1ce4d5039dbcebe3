"""The error hierarchy every botvisor package shares (a leaf: stdlib only)."""


class BotvisorError(Exception):
    """Root of every error botvisor raises on purpose."""


class SchemaError(BotvisorError):
    """A mapping does not fit the dataclass it should become.

    ``path`` names the offending key (``data.chat``), ``reason`` says what is wrong.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


class ProtocolError(BotvisorError):
    """Bytes from the wire are not a valid botvisor message. The message says why."""
