"""Fleet-wide outages: the same WhatsApp failure hitting many bots at once is one incident.

When WhatsApp refuses a client version (405) or bans a range of numbers, every bot of a fleet
fails within minutes, each with its own error; an operator then reads N unrelated failures.
The arbiter hands every failure it sees here; once ``threshold`` different bots have reported
the same code (and WhatsApp status) within ``window`` seconds, it publishes ONE notice naming
the code and the bots, and the ``botvisor_fleet_outage_bots`` metric counts them. A failure
counts when it is fatal or carries WhatsApp's numeric status (a connect failure). Pure: the
caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol import ErrorEvent


@dataclass
class Outage:
    code: str
    status: int | None
    #: bot id -> when it last reported this failure
    bots: dict[str, float] = field(default_factory=dict)
    announced: bool = False
    #: notices published for this code since the supervisor started
    count: int = 0


class OutageWatch:
    def __init__(self, threshold: int = 3, window: float = 300.0) -> None:
        self.threshold, self.window = threshold, window
        self.outages: dict[tuple[str, int | None], Outage] = {}

    @staticmethod
    def counts(error: ErrorEvent) -> bool:
        return error.fatal or error.status is not None

    def observe(self, bot: str, error: ErrorEvent, now: float) -> str | None:
        """Record ``bot``'s failure; the notice text when this makes it a fleet-wide outage."""
        if not self.counts(error):
            return None
        outage = self.outages.setdefault((error.code, error.status), Outage(error.code, error.status))
        outage.bots = {b: t for b, t in outage.bots.items() if now - t <= self.window}
        if not outage.bots:
            outage.announced = False  # the last one is over: a new incident starts here
        outage.bots[bot] = now
        if outage.announced or len(outage.bots) < self.threshold:
            return None
        outage.announced = True
        outage.count += 1
        status = f" (WhatsApp status {error.status})" if error.status is not None else ""
        bots = ", ".join(sorted(outage.bots))
        return (f"fleet-wide outage: {len(outage.bots)} bots failed with {error.code}{status} within "
                f"{self.window:g} s: {bots}; last: {error.message}")

    def active(self, now: float) -> list[Outage]:
        """Announced outages with a failure inside the window, for the metrics."""
        return [o for o in self.outages.values()
                if o.announced and any(now - t <= self.window for t in o.bots.values())]
