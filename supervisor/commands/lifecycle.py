"""``start``, ``stop``, ``restart``: act on named bots (``{"bots": [...]}``) or ``{"all": true}``.

``start`` refuses a bot whose temporary ban has not expired (the entry says why, with the
expiry) unless ``{"force": true}``.

The reply lists what each bot's container was asked to do and its state right after; the
transitions themselves are published on the tap as ``state`` messages.
"""

from __future__ import annotations

from typing import Any

from protocol.control import Request, error, ok


def _targets(supervisor: Any, request: Request) -> list[Any] | str:
    if request.args.get("all") is True:
        return list(supervisor.manager)
    bots = request.args.get("bots")
    if not isinstance(bots, list) or not bots or not all(isinstance(b, str) for b in bots):
        return "give 'bots' (a non-empty list of bot ids) or 'all': true"
    unknown = [b for b in bots if supervisor.manager.find(b) is None]
    if unknown:
        return f"no such bot: {', '.join(unknown)}"
    return [supervisor.manager.get_bot_container(b) for b in bots]


def _act(action: str) -> Any:
    def execute(supervisor: Any, request: Request, answer: Any) -> None:
        targets = _targets(supervisor, request)
        if isinstance(targets, str):
            answer(error(request.id, targets))
            return
        if supervisor.shutting_down:
            answer(error(request.id, "the supervisor is shutting down"))
            return
        done = {}
        for container in targets:
            before = container.state.value
            refused = container.start_refused(request.args.get("force") is True) if action == "start" else None
            if refused is not None:  # e.g. a temporary ban not yet over
                done[container.bot.id] = {"before": before, "after": before, "refused": refused}
                continue
            getattr(container, action)(reason=f"{action} requested by an operator") if action != "start" \
                else container.start()
            done[container.bot.id] = {"before": before, "after": container.state.value}
        answer(ok(request.id, done))

    execute.__name__ = action
    return execute


start = _act("start")
stop = _act("stop")
restart = _act("restart")
