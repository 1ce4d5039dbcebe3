"""The bot operations an operator runs by hand: one subcommand each, all the same shape.

Each calls one BotHandle method (the path library users take too) and prints its result as
JSON (``--json`` is the default: these answers are data). The worker checks the arguments and
its error names the bad one; exit 1 on any refusal, 3 when no supervisor answers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

from .common import EXIT_OK, add_config_argument, bot_call


class Operation:
    """A subcommand, shaped like the one-module-per-command ones (__doc__, add_arguments, execute)."""

    def __init__(self, doc: str, method: str, arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...],
                 call: Callable[[argparse.Namespace], tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
        self.__doc__ = doc
        self.method, self.arguments = method, arguments
        #: args namespace -> (positional call args, keyword call args)
        self.call = call

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_config_argument(parser)
        parser.add_argument("bot", metavar="BOT")
        for flags, options in self.arguments:
            parser.add_argument(*flags, **options)
        parser.add_argument("--timeout", type=float, default=None, metavar="S",
                            help="seconds the bot may take to answer (default: the config's command_timeout)")

    def execute(self, args: argparse.Namespace) -> int:
        positional, keywords = self.call(args)
        result = bot_call(args, self.method, *positional, **keywords)
        print(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
        return EXIT_OK


def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    return flags, options


def _absolute(path: str) -> str:
    return str(Path(path).resolve())  # the worker's cwd is the bot's directory, not ours


COMMANDS: dict[str, Operation] = {
    "send-media": Operation(
        "Send a file as a bot: botvisor send-media BOT TO KIND PATH [--caption TEXT]",
        "send_media",
        (arg("to", metavar="TO"), arg("kind", choices=("image", "video", "audio", "voice", "document", "sticker")),
         arg("path", metavar="PATH"), arg("--caption"), arg("--file-name"), arg("--mimetype"),
         arg("--quote", metavar="MESSAGE_ID")),
        lambda a: ((a.to, a.kind, _absolute(a.path)),
                   {"caption": a.caption, "file_name": a.file_name, "mimetype": a.mimetype, "quote": a.quote})),
    "react": Operation(
        "React to a message: botvisor react BOT CHAT MESSAGE_ID EMOJI ('' takes it back)",
        "react", (arg("chat"), arg("message_id"), arg("emoji"), arg("--sender")),
        lambda a: ((a.chat, a.message_id, a.emoji), {"sender": a.sender})),
    "edit": Operation(
        "Edit a message the bot sent: botvisor edit BOT CHAT MESSAGE_ID TEXT",
        "edit", (arg("chat"), arg("message_id"), arg("text")), lambda a: ((a.chat, a.message_id, a.text), {})),
    "revoke": Operation(
        "Delete a message for everyone: botvisor revoke BOT CHAT MESSAGE_ID",
        "revoke", (arg("chat"), arg("message_id"), arg("--sender")),
        lambda a: ((a.chat, a.message_id), {"sender": a.sender})),
    "download": Operation(
        "Save a received message's media in the bot's directory: botvisor download BOT MESSAGE_ID",
        "download", (arg("message_id"),), lambda a: ((a.message_id,), {})),
    "check-numbers": Operation(
        "Which phone numbers are on WhatsApp: botvisor check-numbers BOT NUMBER...",
        "check_numbers", (arg("numbers", nargs="+", metavar="NUMBER"),), lambda a: ((a.numbers,), {})),
    "user-info": Operation(
        "Status, picture id and devices of contacts: botvisor user-info BOT JID...",
        "user_info", (arg("jids", nargs="+", metavar="JID"),), lambda a: ((a.jids,), {})),
    "group-info": Operation(
        "A group's subject, settings and participants: botvisor group-info BOT GROUP",
        "group_info", (arg("group", metavar="GROUP"),), lambda a: ((a.group,), {})),
    "subscribe-presence": Operation(
        "Receive a contact's presence updates: botvisor subscribe-presence BOT JID",
        "subscribe_presence", (arg("jid", metavar="JID"),), lambda a: ((a.jid,), {})),
    "reject-call": Operation(
        "Reject an incoming call: botvisor reject-call BOT CALL_ID CALLER",
        "reject_call", (arg("call_id"), arg("caller")), lambda a: ((a.call_id, a.caller), {})),
}
