"""Send a text message as a bot: botvisor send BOT TO TEXT.

TO is a WhatsApp jid (``15551234567@s.whatsapp.net``) or a phone number (digits, with the
country code). Prints the message id, or its place in the queue when the bot's
messages_per_minute holds it back (the worker sends it when its turn comes). Exits 1 when the
bot is not running, not connected or does not answer within --timeout, 3 when no supervisor
answers.
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
    if result.get("queued"):  # over the bot's messages_per_minute
        print(f"{args.bot}: queued message {result.get('queue_id', '?')} to {result.get('to', to)} "
              f"(rate limit: position {result.get('position', '?')}, "
              f"expected in {result.get('expected_delay', '?')} s)")
        return EXIT_OK
    print(f"{args.bot}: sent message {result.get('id', '?')} to {result.get('to', to)}")
    return EXIT_OK
