"""What one delivery attempt's answer means: the one table of retry decisions.

2xx delivered; 408, 429, 5xx, timeouts and connection errors retried (429 and 503 after their
Retry-After when given); any other 4xx or a 3xx (redirects are not followed) not retried.
"""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass

#: the longest Retry-After honoured, seconds
MAX_RETRY_AFTER = 86400.0


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    #: try again (on the curve, or after retry_after)
    retry: bool
    #: counts towards pausing the endpoint (it did not answer, or answered 5xx/408/429)
    failing: bool
    result: str
    error: str = ""
    status: int | None = None
    retry_after: float | None = None


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` that a Retry-After header (seconds or an HTTP date) asks for."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(0.0, when - now), MAX_RETRY_AFTER)


def classify(status: int | None, retry_after_header: str | None, error: BaseException | None,
             now: float) -> Outcome:
    """The outcome of one attempt: its HTTP status (None: no answer, ``error`` says why)."""
    if status is None:
        kind = "timeout" if isinstance(error, (asyncio.TimeoutError, TimeoutError)) else "error"
        return Outcome(False, True, True, kind, f"{kind}: {error.__class__.__name__}: {error}")
    if 200 <= status < 300:
        return Outcome(True, False, False, "2xx", status=status)
    reason = f"HTTP {status}"
    after = retry_after(retry_after_header, now) if status in (429, 503) else None
    if status in (408, 429) or status >= 500:
        return Outcome(False, True, True, "5xx" if status >= 500 else "4xx", reason, status, after)
    return Outcome(False, False, False, "4xx" if status >= 400 else "3xx", reason + " (not retried)", status)
