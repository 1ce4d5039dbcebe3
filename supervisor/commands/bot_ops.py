"""The bot's WhatsApp operations beyond send/presence/mark_read, forwarded as they are.

Args: ``{"bot": id, "timeout"?: seconds, ...the operation's own arguments}`` (docs/control.md
lists them). The worker checks the operation's arguments itself and its error names the bad
one, so the supervisor only routes: one list of names here, no second copy of the rules.
"""

from __future__ import annotations

from typing import Any, Callable

from protocol.control import Request

from .forward import forward

#: operations forwarded to the worker unchanged (worker/wa_operations.py)
FORWARDED = ("simulate", "send_media", "react", "edit", "revoke", "download", "subscribe_presence",
             "check_numbers", "user_info", "group_info", "reject_call")
#: arguments that belong to the supervisor's routing, not to the operation
ROUTING = ("bot", "timeout")


def command(name: str) -> Callable[[Any, Request, Any], None]:
    def execute(supervisor: Any, request: Request, answer: Any) -> None:
        args = {key: value for key, value in request.args.items() if key not in ROUTING}
        forward(supervisor, request, answer, name, args)

    execute.__doc__ = f"``{name}``: forwarded to the bot's worker (worker/wa_operations.py)."
    return execute


COMMANDS = {name: command(name) for name in FORWARDED}
