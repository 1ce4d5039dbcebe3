"""neonize events -> botvisor event data: one pure function, documented in docs/neonize.md.

``map_event(event, now)`` takes a neonize protobuf event (as a Go thread handed it over) and
returns the plain protocol data for it, or None for events a bot does not publish. It reads
no clock (``now`` is wall-clock seconds, for a ban's expiry) and touches no client, so it is
tested on real protobuf objects built in the test. The backend decides what to *do* with the
result: a close starts the reconnect watch, a fatal error ends the worker.

Importing this module imports neonize (its protobuf classes), which starts the Go runtime:
only the neonize backend and its tests import it.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from neonize.proto import Neonize_pb2 as pb

from protocol import (
    ConnectionUpdate,
    CredsUpdate,
    ErrorEvent,
    EventData,
    PresenceUpdate,
)

from . import neonize_messages
from .neonize_messages import jid, seconds, user_jid

R = pb.ConnectFailureReason

#: neonize's ConnectFailureReason -> WhatsApp's numeric code (whatsmeow's ConnectFailureReason)
STATUS_OF_REASON: dict[int, int] = {
    R.GENERIC: 400, R.LOGGED_OUT: 401, R.TEMP_BANNED: 402, R.MAIN_DEVICE_GONE: 403,
    R.UNKNOWN_LOGOUT: 406, R.CLIENT_OUTDATED: 405, R.BAD_USER_AGENT: 409,
    R.INTERNAL_SERVER_ERROR: 500, R.EXPERIMENTAL: 501, R.SERVICE_UNAVAILABLE: 503,
}

B = pb.TemporaryBan.TempBanReason
#: neonize's TempBanReason -> WhatsApp's ban reason code and what it means
BAN_REASONS: dict[int, tuple[int, str]] = {
    B.SEND_TO_TOO_MANY_PEOPLE: (101, "too many messages to people who do not have you as a contact"),
    B.BLOCKED_BY_USERS: (102, "blocked by too many people"),
    B.CREATED_TOO_MANY_GROUPS: (103, "created too many groups with people who do not have you as a contact"),
    B.SENT_TOO_MANY_SAME_MESSAGE: (104, "sent the same message to too many people"),
    B.BROADCAST_LIST: (106, "sent too many messages to a broadcast list"),
}

#: error codes that end the worker with exit_codes.FATAL (the container goes to failed)
FATAL_CODES = frozenset({"logged-out", "temporary-ban", "client-outdated", "stream-replaced", "client-rejected",
                         "unknown-failure"})


def _logged_out(reason: int, on_connect: bool) -> ErrorEvent:
    status = STATUS_OF_REASON.get(reason, 401)
    when = "while connecting" if on_connect else "during the session"
    return ErrorEvent(code="logged-out", fatal=True, status=status,
                      message=f"logged out {when} ({R.Name(reason) if reason in STATUS_OF_REASON else reason}, "
                              f"{status}): the session is gone, pair the bot again")


def _temporary_ban(ev: pb.TemporaryBan, now: float) -> ErrorEvent:
    code, why = BAN_REASONS.get(ev.Code, (0, f"reason {ev.Code}"))
    if ev.Expire <= 0:  # whatsmeow: "Expire == 0" means WhatsApp gave no expiry
        return ErrorEvent(code="temporary-ban", fatal=True, status=402,
                          message=f"temporarily banned ({code}: {why}); WhatsApp gave no expiry: "
                                  "check the phone before starting the bot again")
    expires_at = now + ev.Expire  # Expire is a duration in seconds, not a date
    return ErrorEvent(code="temporary-ban", fatal=True, status=402, expires_at=expires_at,
                      message=f"temporarily banned ({code}: {why}) for {ev.Expire} s; "
                              "do not reconnect before it expires")


def _client_outdated() -> ErrorEvent:
    return ErrorEvent(code="client-outdated", fatal=True, status=405,
                      message="WhatsApp refuses this client version (405): upgrade neonize")


#: ConnectFailure codes whatsmeow hands over (handleConnectFailure's default branch: it calls
#: expectDisconnect and does NOT reconnect) that mean this client is refused: fatal. Every other
#: ConnectFailure restarts the worker. 401/403/406 arrive as LoggedOut, 402 as TemporaryBan, 405
#: as ClientOutdated; 500/503 are auto-reconnected without any event and 413/414 refresh a
#: Messenger token: none of those is ever a ConnectFailure event (docs/neonize.md).
CONNECT_FAILURE_FATAL = {
    R.BAD_USER_AGENT: ("client-rejected", "WhatsApp rejected this client's user agent (409): upgrade neonize"),
}
#: error codes that end the worker to be restarted under the policy (exit 70): whatsmeow gave
#: up on the session, and only a new dial (a new worker life) tries again
RESTART_CODES = frozenset({"connect-failure", "pairing-timeout", "event-lost"})


def _connect_failure(ev: pb.ConnectFailure, now: float) -> EventData:
    """whatsmeow does not reconnect after a ConnectFailure event: the worker must end."""
    reason = ev.Reason
    status = STATUS_OF_REASON.get(reason, 0)
    detail = f": {ev.Message}" if ev.Message else ""
    if reason in CONNECT_FAILURE_FATAL:
        code, message = CONNECT_FAILURE_FATAL[reason]
        return ErrorEvent(code=code, fatal=True, status=status, message=message + detail)
    name = R.Name(reason) if reason in STATUS_OF_REASON else f"reason {reason}"
    return ErrorEvent(code="connect-failure", status=status or None,
                      message=f"connect failure {status or reason} ({name}){detail}; whatsmeow does not "
                              "reconnect after it, so the worker ends and is restarted under the policy")


def _presence(ev: pb.Presence, now: float) -> PresenceUpdate:
    # seconds, unlike messages; hidden last-seen arrives as Go's zero time (-62135596800)
    return PresenceUpdate(jid=user_jid(ev.From), presence="unavailable" if ev.Unavailable else "available",
                          last_seen=seconds(ev.LastSeen))


def _chat_presence(ev: pb.ChatPresence, now: float) -> PresenceUpdate:
    if ev.State == pb.ChatPresence.PAUSED:
        presence = "paused"
    elif ev.Media == pb.ChatPresence.AUDIO:
        presence = "recording"
    else:
        presence = "composing"
    source = ev.MessageSource
    return PresenceUpdate(jid=user_jid(source.Sender), chat=jid(source.Chat), presence=presence)  # type: ignore[arg-type]


def _pair_status(ev: pb.PairStatus, now: float) -> EventData:
    if ev.Status == pb.PairStatus.SUCCESS:
        return CredsUpdate(verified=True, phone_number=ev.ID.User or None, last_updated=now, reason="paired")
    return ErrorEvent(code="pair-failed", message=f"pairing failed: {ev.Error or 'no reason given'}")


def _keepalive_timeout(ev: pb.KeepAliveTimeout, now: float) -> ConnectionUpdate:
    return ConnectionUpdate("close", reason=f"keepalive timeout ({ev.ErrorCount} missed)")


def _stream_error(ev: pb.StreamError, now: float) -> ConnectionUpdate:
    return ConnectionUpdate("close", reason=f"stream error {ev.Code or '(no code)'}")


def unencodable_event(error: str) -> ErrorEvent | None:
    """What ``connect()`` raising "required field X not set" means: whatsmeow dispatched an event
    neonize could not encode (its Go encoder leaves an enum unset for a code it does not list),
    and neonize's event loop ended with it, so the session hears nothing more. None for other
    errors. A failure or ban code neonize does not know is never a reason to dial again."""
    match = _REQUIRED_FIELD.search(error)
    if match is None:
        return None
    field = match.group(1)
    if field.startswith(("neonize.TemporaryBan.", "neonize.ConnectFailure.", "neonize.LoggedOut.")):
        what = field.split(".")[1]
        return ErrorEvent(code="unknown-failure", fatal=True,
                          message=f"WhatsApp refused the session with a {what} code neonize does not know "
                                  f"(neonize could not encode {field}); the account may be banned or logged out: "
                                  "check the phone, then start the bot again")
    return ErrorEvent(code="event-lost", message=f"neonize could not encode an event ({field} not set) and its "
                                                 "event loop ended; restarting the session")


_REQUIRED_FIELD = re.compile(r"required field ([\w.]+) not set")


MAPPERS: dict[type, Callable[[Any, float], Any]] = {
    pb.Connected: lambda ev, now: ConnectionUpdate("open"),
    pb.KeepAliveRestored: lambda ev, now: ConnectionUpdate("open", reason="keepalive restored"),
    pb.Disconnected: lambda ev, now: ConnectionUpdate("close", reason="disconnected"),
    pb.KeepAliveTimeout: _keepalive_timeout,
    pb.StreamError: _stream_error,
    pb.ConnectFailure: _connect_failure,
    pb.LoggedOut: lambda ev, now: _logged_out(ev.Reason, ev.OnConnect),
    pb.TemporaryBan: _temporary_ban,
    pb.ClientOutdated: lambda ev, now: _client_outdated(),
    pb.StreamReplaced: lambda ev, now: ErrorEvent(
        code="stream-replaced", fatal=True, message="another process connected with this session (stream replaced); "
        "stop the other one before starting this bot again"),
    pb.PairStatus: _pair_status,
    pb.Message: neonize_messages.map_message,
    pb.Presence: _presence,
    pb.ChatPresence: _chat_presence,
    pb.Receipt: neonize_messages.map_receipt,
    pb.CallOffer: neonize_messages.map_call_offer,
    pb.CallAccept: neonize_messages.map_call_accept,
    pb.CallTerminate: neonize_messages.map_call_terminate,
    pb.GroupInfoEvent: neonize_messages.map_group_changes,
    pb.JoinedGroup: neonize_messages.map_joined_group,
    pb.HistorySync: neonize_messages.map_history_sync,
}

#: the neonize event classes the backend registers (only registered types leave Go)
EVENT_TYPES: tuple[type, ...] = tuple(MAPPERS)


def map_events(event: Any, now: float) -> list[EventData]:
    """The protocol data for a neonize event: none when a bot does not publish it, several when
    whatsmeow batched several changes in one event (group changes)."""
    mapper = MAPPERS.get(type(event))
    data = mapper(event, now) if mapper is not None else None
    if data is None:
        return []
    return data if isinstance(data, list) else [data]


def map_event(event: Any, now: float) -> EventData | None:
    """The first (usually only) protocol data for a neonize event, or None."""
    data = map_events(event, now)
    return data[0] if data else None
