"""Forwarding an operator's request to one bot's worker, for the commands that act as the bot.

The supervisor's loop never waits: the request goes out on the commands ROUTER and the
operator's answer is sent later, from the worker's reply or from this module's own timer,
whichever comes first; the other is ignored. So a stopped or stuck worker costs the operator
``timeout`` seconds and costs the supervisor nothing.
"""

from __future__ import annotations

from typing import Any, Callable

from protocol import ContainerState
from protocol.codes import (
    BAD_REQUEST,
    NOT_RUNNING,
    TIMEOUT,
    UNKNOWN_BOT,
    WORKER_ERROR,
    failure,
)
from protocol.control import Reply, Request, ok

#: the longest a caller may ask a worker command to wait, seconds
MAX_TIMEOUT = 3600.0
#: extra time given to call_worker's own timer, so ours always fires first
GRACE = 1.0


def bot_argument(request: Request) -> str | None:
    bot = request.args.get("bot")
    return bot if isinstance(bot, str) and bot else None


def text_argument(request: Request, key: str) -> str | None:
    value = request.args.get(key)
    return value if isinstance(value, str) and value else None


def timeout_argument(supervisor: Any, request: Request) -> float | None:
    """The request's ``timeout`` (seconds), else the config's command_timeout; None if invalid."""
    value = request.args.get("timeout")
    if value is None:
        return float(supervisor.config.supervisor.command_timeout)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_TIMEOUT:
        return None
    return float(value)


def forward(supervisor: Any, request: Request, answer: Callable[[Reply], None], command: str,
            args: dict[str, Any]) -> None:
    """Run worker operation ``command`` on ``request.args['bot']``; answer exactly once."""
    bot_id = bot_argument(request)
    if bot_id is None:
        answer(failure(request.id, BAD_REQUEST, "argument 'bot' must be a bot id"))
        return
    wait = timeout_argument(supervisor, request)
    if wait is None:
        answer(failure(request.id, BAD_REQUEST, f"argument 'timeout' must be a number of seconds in (0, {MAX_TIMEOUT:g}]"))
        return
    container = supervisor.manager.find(bot_id)
    if container is None:
        answer(failure(request.id, UNKNOWN_BOT, f"no bot {bot_id!r} is configured"))
        return
    if container.state is not ContainerState.RUNNING:
        answer(failure(request.id, NOT_RUNNING, f"bot {bot_id} is {container.state}, not running"))
        return

    done = False
    sending = True
    timer = None

    def finish(reply: Reply) -> None:
        nonlocal done
        if done:
            return  # the worker's late reply after our timeout, or call_worker's own expiry
        done = True
        if timer is not None:
            timer.cancel()
        answer(reply)

    def on_reply(reply: Reply) -> None:
        if reply.ok:
            finish(ok(request.id, reply.result))
        else:  # an error while still sending means the worker could not be reached
            finish(failure(request.id, NOT_RUNNING if sending else WORKER_ERROR, reply.error or "worker error"))

    def expire() -> None:
        finish(failure(request.id, TIMEOUT, f"bot {bot_id} did not answer {command!r} within {wait:g} s"))

    supervisor.call_worker(bot_id, command, args, on_reply, timeout=wait + GRACE)
    sending = False
    if not done:
        timer = supervisor.call_later(wait, expire)
