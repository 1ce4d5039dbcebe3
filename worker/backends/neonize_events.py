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

from typing import Any, Callable

from neonize.proto import Neonize_pb2 as pb
from neonize.utils import Jid2String, JIDToNonAD, extract_text

from protocol import (
    ConnectionUpdate,
    CredsUpdate,
    ErrorEvent,
    EventData,
    MessageUpsert,
    PresenceUpdate,
)

R = pb.ConnectFailureReason

#: neonize's ConnectFailureReason -> WhatsApp's numeric code (whatsmeow's ConnectFailureReason)
STATUS_OF_REASON: dict[int, int] = {
    R.GENERIC: 400, R.LOGGED_OUT: 401, R.TEMP_BANNED: 402, R.MAIN_DEVICE_GONE: 403,
    R.UNKNOWN_LOGOUT: 406, R.CLIENT_OUTDATED: 405, R.BAD_USER_AGENT: 409,
    R.INTERNAL_SERVER_ERROR: 500, R.EXPERIMENTAL: 501, R.SERVICE_UNAVAILABLE: 503,
}
#: the session is gone on the server: whatsmeow deletes it, only pairing again helps
LOGGED_OUT_REASONS = frozenset({R.LOGGED_OUT, R.MAIN_DEVICE_GONE, R.UNKNOWN_LOGOUT})

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
FATAL_CODES = frozenset({"logged-out", "temporary-ban", "client-outdated", "stream-replaced"})


def jid(value: pb.JID) -> str:
    return Jid2String(value)


def user_jid(value: pb.JID) -> str:
    """A sender without its device part: ``123:4@s.whatsapp.net`` -> ``123@s.whatsapp.net``."""
    return Jid2String(JIDToNonAD(value))


def _logged_out(reason: int, on_connect: bool) -> ErrorEvent:
    status = STATUS_OF_REASON.get(reason, 401)
    when = "while connecting" if on_connect else "during the session"
    return ErrorEvent(code="logged-out", fatal=True, status=status,
                      message=f"logged out {when} ({R.Name(reason) if reason in STATUS_OF_REASON else reason}, "
                              f"{status}): the session is gone, pair the bot again")


def _temporary_ban(ev: pb.TemporaryBan, now: float) -> ErrorEvent:
    code, why = BAN_REASONS.get(ev.Code, (0, f"reason {ev.Code}"))
    expires_at = now + ev.Expire  # Expire is a duration in seconds, not a date
    return ErrorEvent(code="temporary-ban", fatal=True, status=402, expires_at=expires_at,
                      message=f"temporarily banned ({code}: {why}) for {ev.Expire} s; "
                              "do not reconnect before it expires")


def _client_outdated() -> ErrorEvent:
    return ErrorEvent(code="client-outdated", fatal=True, status=405,
                      message="WhatsApp refuses this client version (405): upgrade neonize")


def _connect_failure(ev: pb.ConnectFailure, now: float) -> EventData:
    """whatsmeow sends the fatal reasons as their own events; map them here too, to be safe."""
    reason = ev.Reason
    status = STATUS_OF_REASON.get(reason)
    if reason in LOGGED_OUT_REASONS:
        return _logged_out(reason, on_connect=True)
    if reason == R.TEMP_BANNED:
        return ErrorEvent(code="temporary-ban", fatal=True, status=402, message=f"temporarily banned: {ev.Message}")
    if reason == R.CLIENT_OUTDATED:
        return _client_outdated()
    name = R.Name(reason) if status is not None else f"reason {reason}"
    detail = f": {ev.Message}" if ev.Message else ""
    return ConnectionUpdate("close", reason=f"connect failure {status or reason} ({name}){detail}")


def _message(ev: pb.Message, now: float) -> MessageUpsert:
    info = ev.Info
    source = info.MessageSource
    text = extract_text(ev.Message)
    return MessageUpsert(
        id=info.ID,
        chat=jid(source.Chat),
        sender=user_jid(source.Sender),
        timestamp=info.Timestamp / 1000.0,  # whatsmeow hands milliseconds
        from_me=source.IsFromMe,
        text=text or None,
        message_type=info.MediaType or info.Type or "unknown",
        push_name=info.Pushname or None,
        is_group=source.IsGroup,
    )


def _presence(ev: pb.Presence, now: float) -> PresenceUpdate:
    return PresenceUpdate(jid=user_jid(ev.From), presence="unavailable" if ev.Unavailable else "available",
                          last_seen=float(ev.LastSeen) if ev.LastSeen else None)  # seconds, unlike messages


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


MAPPERS: dict[type, Callable[[Any, float], EventData | None]] = {
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
    pb.Message: _message,
    pb.Presence: _presence,
    pb.ChatPresence: _chat_presence,
}

#: the neonize event classes the backend registers (only registered types leave Go)
EVENT_TYPES: tuple[type, ...] = tuple(MAPPERS)


def map_event(event: Any, now: float) -> EventData | None:
    """The protocol data for a neonize event, or None when a bot does not publish it."""
    mapper = MAPPERS.get(type(event))
    return mapper(event, now) if mapper is not None else None
