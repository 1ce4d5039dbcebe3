"""How an app's context runs an operation: by name, as everyone does, with one courtesy.

``ctx.reply`` quotes the message it answers "when the backend can": the backend quotes only a
message it still remembers (the last few thousand, worker/recent.py), so a reply to an old
message, after a restart or behind a long backlog, goes out unquoted instead of failing.
"""

from __future__ import annotations

from typing import Any

from .. import commands as worker_commands

#: set by ctx.reply: drop ``quote`` when the backend no longer knows the message
QUOTE_IF_KNOWN = "quote_if_known"


def run_for_app(backend: Any, name: str, args: dict[str, Any]) -> Any:
    if args.pop(QUOTE_IF_KNOWN, False) and args.get("quote") is not None:
        recent = getattr(backend, "recent", None)
        if recent is not None and recent.get(args["quote"]) is None:
            args = {key: value for key, value in args.items() if key != "quote"}
    return worker_commands.run(backend, name, args)
