"""Inject incoming WhatsApp traffic into a simulated bot: botvisor simulate BOT --from NUMBER --text TEXT.

Only bots on the simulated backend accept it. --kind picks what arrives (default message):
  message       --from N --text T [--group G] [--quote ID] [--media KIND:PATH] [--mention N ...]
  reaction      --from N --target ID --emoji E        edit    --from N --target ID --text T
  revoke        --from N --target ID                  receipt --from N --message-id ID [--type read]
  call          --from N [--state offer] [--video]    presence --from N [--presence composing]
  group         --group G --action join --participant N [--from ACTOR] [--subject S]
Prints the event type and the id of what was injected; `botvisor tap` shows the bot's answer.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import EXIT_OK, EXIT_USAGE, add_config_argument, bot_call, fail

KINDS = ("message", "reaction", "edit", "revoke", "receipt", "call", "group", "presence", "history-sync")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("bot", metavar="BOT")
    parser.add_argument("--kind", choices=KINDS, default="message")
    parser.add_argument("--from", dest="sender", metavar="NUMBER", help="the sender: a phone number or a JID")
    parser.add_argument("--text", help="the message text (message, edit)")
    parser.add_argument("--group", metavar="JID", help="a group chat (...@g.us) instead of a private chat")
    parser.add_argument("--quote", metavar="ID", help="the id of the message this one replies to")
    parser.add_argument("--media", metavar="KIND:PATH", help="attach a file: image, video, audio, voice, document, sticker")
    parser.add_argument("--caption", help="alias of --text for media")
    parser.add_argument("--mention", action="append", metavar="NUMBER", help="a mentioned contact (repeatable)")
    parser.add_argument("--target", metavar="ID", help="the message a reaction, edit or revoke acts on")
    parser.add_argument("--emoji", help="the reaction ('' takes it back)")
    parser.add_argument("--message-id", action="append", dest="message_ids", metavar="ID", help="receipt: a message id (repeatable)")
    parser.add_argument("--type", dest="receipt_type", choices=("delivered", "read", "played"))
    parser.add_argument("--state", choices=("offer", "accept", "terminate", "reject"), help="call state")
    parser.add_argument("--video", action="store_true", help="a video call")
    parser.add_argument("--action", help="group: join, leave, promote, demote, subject, description, ...")
    parser.add_argument("--participant", action="append", metavar="NUMBER", help="group: a member concerned (repeatable)")
    parser.add_argument("--subject", help="group: the new subject")
    parser.add_argument("--presence", choices=("available", "unavailable", "composing", "paused", "recording"))
    parser.add_argument("--push-name", help="the sender's display name")
    parser.add_argument("--json", action="store_true", help="print the injected event's data as JSON")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds the bot may take to answer (default: the config's command_timeout)")


def request_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``simulate`` operation's arguments from the command line (only those given)."""
    out: dict[str, Any] = {}
    text = args.text if args.text is not None else args.caption
    pairs = {"from": args.sender, "text": text, "group": args.group, "quote": args.quote, "mentions": args.mention,
             "target": args.target, "emoji": args.emoji, "message_ids": args.message_ids, "type": args.receipt_type,
             "state": args.state, "action": args.action, "participants": args.participant, "subject": args.subject,
             "presence": args.presence, "push_name": args.push_name}
    out.update({key: value for key, value in pairs.items() if value is not None})
    if args.video:
        out["video"] = True
    if args.media:
        kind, sep, path = args.media.partition(":")
        if not sep or not path:
            raise ValueError(f"--media must be KIND:PATH, got {args.media!r}")
        from pathlib import Path

        out["media"] = {"kind": kind, "path": str(Path(path).resolve())}
    return out


def execute(args: argparse.Namespace) -> int:
    try:
        call_args = request_args(args)
    except ValueError as exc:
        return fail(str(exc), EXIT_USAGE)
    result = bot_call(args, "simulate", args.kind, **call_args)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(f"{args.bot}: injected {result.get('event')} {result.get('id') or ''}".rstrip())
    return EXIT_OK
