"""Send a text message as a bot: botvisor send BOT TO TEXT.

TO is a WhatsApp jid (``15551234567@s.whatsapp.net``) or a phone number (digits, with the
country code). Prints the WhatsApp message id and the send id; when the bot's
messages_per_minute holds the message back, its send id and place in the queue (it is stored in
the bot's outbox and sent when its turn comes; a ``send-status`` event with that id tells the
outcome). Exits 1 when the bot is not running, not connected, its outbox is full or it does
not answer within --timeout, 3 when no supervisor answers.
"""

from __future__ import annotations

import argparse

from .common import EXIT_OK, add_config_argument, bot_call


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("bot", metavar="BOT")
    parser.add_argument("to", metavar="TO", help="a jid, or a phone number with its country code")
    parser.add_argument("text", metavar="TEXT")
    parser.add_argument("--quote", metavar="MESSAGE_ID", help="reply to this message (one the bot received or sent)")
    parser.add_argument("--mention", action="append", metavar="NUMBER", help="mention a contact (repeatable)")
    parser.add_argument("--timeout", type=float, default=None, metavar="S",
                        help="seconds the bot may take to answer (default: the config's command_timeout)")


def jid(to: str) -> str:
    digits = to.lstrip("+")
    return f"{digits}@s.whatsapp.net" if digits.isdigit() else to


def execute(args: argparse.Namespace) -> int:
    to = jid(args.to)
    result = bot_call(args, "send_message", to, args.text, quote=args.quote, mentions=args.mention)
    send_id, message_id = result.get("id", "?"), result.get("message_id")
    if result.get("state") == "queued":  # stored in the bot's outbox; its send-status event follows
        print(f"{args.bot}: queued send {send_id} to {result.get('to', to)} "
              f"(position {result.get('position', '?')}, expected in {result.get('expected_delay', '?')} s; "
              f"message id {message_id or 'known once sent'})")
        return EXIT_OK
    print(f"{args.bot}: sent message {message_id or '?'} to {result.get('to', to)} (send {send_id})")
    return EXIT_OK
