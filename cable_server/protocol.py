"""The ActionCable wire protocol (``actioncable-v1-json``), sans I/O.

Strings in, command values and frames out: nothing here awaits, reads a socket or knows about
Starlette. The I/O layer (:mod:`cable_server.session`) feeds every text frame it receives to
:meth:`ServerProtocol.receive_text` and sends every string this module returns, in order.

Contract of :class:`ServerProtocol`:

* Until :meth:`ServerProtocol.accept` is called, received commands are buffered (Rails'
  ``MessageBuffer``); ``accept`` returns the welcome frame and then the buffered commands,
  which must be executed after the welcome has been queued.
* After :meth:`ServerProtocol.reject` or :meth:`ServerProtocol.close`, every later frame is
  ignored.
* A frame that is not a valid command is returned as a :class:`~cable_server.errors.ProtocolError`
  value, never raised: the caller logs it and the connection stays usable, as in Rails.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from . import encoding
from .errors import (
    BinaryFrame,
    InvalidCommandData,
    InvalidIdentifier,
    MalformedFrame,
    ProtocolError,
    UnknownCommand,
)

__all__ = [
    "PONG_FRAME",
    "PROTOCOL_UNSUPPORTED",
    "PROTOCOL_V1_EXT_JSON",
    "PROTOCOL_V1_JSON",
    "SUPPORTED_PROTOCOLS",
    "WELCOME_FRAME",
    "Command",
    "DisconnectReason",
    "Event",
    "History",
    "HistoryRequest",
    "Perform",
    "Ping",
    "Pong",
    "ServerProtocol",
    "State",
    "Subscribe",
    "Unsubscribe",
    "confirm_frame",
    "decode_command",
    "disconnect_frame",
    "history_frame",
    "message_frame",
    "parse_identifier",
    "ping_frame",
    "reject_frame",
    "select_subprotocol",
    "stream_message_frame",
    "welcome_frame",
]

PROTOCOL_V1_JSON = "actioncable-v1-json"
PROTOCOL_UNSUPPORTED = "actioncable-unsupported"
#: AnyCable's extension: ``sid`` in the welcome, stream offsets, ``history``, ``ping``/``pong``.
PROTOCOL_V1_EXT_JSON = "actioncable-v1-ext-json"
#: The server's list: Rails' (``ActionCable::INTERNAL[:protocols]``), and AnyCable's extension.
SUPPORTED_PROTOCOLS = (PROTOCOL_V1_JSON, PROTOCOL_UNSUPPORTED, PROTOCOL_V1_EXT_JSON)


class DisconnectReason(enum.StrEnum):
    """The ``reason`` of a ``disconnect`` frame (``ActionCable::INTERNAL[:disconnect_reasons]``)."""

    UNAUTHORIZED = "unauthorized"
    INVALID_REQUEST = "invalid_request"
    SERVER_RESTART = "server_restart"
    REMOTE = "remote"
    # AnyCable's reason for a client that cannot keep up with what is sent to it.
    TOO_SLOW = "too_slow"


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """Pick the subprotocol as Rails' websocket-driver does: the first one *the client* listed
    that the server supports, or ``None`` (no ``Sec-WebSocket-Protocol`` header at all)."""
    for name in offered:
        if name in SUPPORTED_PROTOCOLS:
            return name
    return None


# --- commands (client -> server) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    """AnyCable's ``history``: messages after ``streams[name] = (epoch, offset)``, or for streams
    not listed, those broadcast since the Unix time ``since``."""

    since: int | None = None
    streams: dict[str, tuple[str, int]] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, slots=True)
class Subscribe:
    """``{"command":"subscribe","identifier":...}``; ``params`` is the decoded identifier.

    ``history`` is set when an extended-protocol client asks for missed messages as it subscribes.
    """

    identifier: str
    params: dict[str, Any]
    history: HistoryRequest | None = field(default=None, hash=False)

    @property
    def channel(self) -> str:
        """The channel name the client asked for."""
        return str(self.params["channel"])


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``{"command":"unsubscribe","identifier":...}``."""

    identifier: str


#: Ruby's ``[[:space:]]`` on a UTF-8 string: Unicode's White_Space characters. (``str.isspace``
#: also counts U+001C..U+001F, which Ruby does not.)
_RUBY_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _is_blank(value: object) -> bool:
    """ActiveSupport's ``blank?`` for a JSON value: ``null``, ``false``, an empty array or object,
    or a string of nothing but whitespace (as Ruby counts it)."""
    if isinstance(value, str):
        return not value.strip(_RUBY_SPACE)
    return value is None or value is False or value == [] or value == {}


@dataclass(frozen=True, slots=True)
class Perform:
    """``{"command":"message","identifier":...,"data":"<json object>"}``.

    ``data`` is the decoded object, ``"action"`` included, as Rails passes it to the action.
    """

    identifier: str
    data: dict[str, Any] = field(hash=False)

    @property
    def action(self) -> str | None:
        """The action to run, picked as Rails picks it (``data["action"].presence || :receive``):
        ``"receive"`` when the action is blank (missing, ``""``, whitespace, ``null``, ``false``,
        ``[]``, ``{}``), the string itself, or ``None`` when it is something else (a number,
        ``true``, a non-empty array or object), which names no action (Rails fails to make a
        method name of it and answers nothing)."""
        action = self.data.get("action")
        if _is_blank(action):
            return "receive"
        return action if isinstance(action, str) else None


@dataclass(frozen=True, slots=True)
class History:
    """Extended protocol: ``{"command":"history","identifier":...,"history":{...}}``."""

    identifier: str
    request: HistoryRequest


@dataclass(frozen=True, slots=True)
class Ping:
    """Extended protocol: a client's ``{"command":"ping"}``, answered with ``{"type":"pong"}``."""


@dataclass(frozen=True, slots=True)
class Pong:
    """Extended protocol: a client's answer to a server ping (nothing to do)."""


Command = Subscribe | Unsubscribe | Perform | History | Ping | Pong
Event = Command | ProtocolError


def _require_unicode(identifier: str) -> None:
    """Every answer about a subscription echoes its identifier, so it must be writable as UTF-8:
    a ``\\ud800`` escape in the frame decodes to a lone surrogate, which no frame can carry."""
    if not identifier.isascii():
        try:
            identifier.encode()
        except UnicodeEncodeError:
            raise InvalidIdentifier("identifier holds a lone surrogate (not valid Unicode)") from None


def parse_identifier(identifier: object) -> dict[str, Any]:
    """Decode a subscription identifier into channel params; it must be a JSON object string
    with a string ``channel``, and valid Unicode."""
    if not isinstance(identifier, str):
        raise InvalidIdentifier(f"identifier must be a string, got {type(identifier).__name__}")
    _require_unicode(identifier)
    try:
        params = encoding.loads(identifier)
    except encoding.DecodeError as exc:
        raise InvalidIdentifier(f"identifier is not JSON: {exc}") from exc
    if not isinstance(params, dict):
        raise InvalidIdentifier("identifier is not a JSON object")
    if not isinstance(params.get("channel"), str):
        raise InvalidIdentifier("identifier has no channel name")
    return params


def _require_identifier(frame: dict[str, Any]) -> str:
    identifier = frame.get("identifier")
    if not isinstance(identifier, str):
        raise InvalidIdentifier("command has no string identifier")
    _require_unicode(identifier)
    return identifier


def _history_request(raw: object) -> HistoryRequest:
    if not isinstance(raw, dict):
        raise InvalidCommandData("history must be an object")
    since = raw.get("since")
    streams: dict[str, tuple[str, int]] = {}
    for name, position in (raw.get("streams") or {}).items() if isinstance(raw.get("streams"), dict) else ():
        if isinstance(position, dict) and isinstance(position.get("epoch"), str) and type(position.get("offset")) is int:
            streams[name] = (position["epoch"], position["offset"])
    return HistoryRequest(since if type(since) is int and since > 0 else None, streams)


def decode_command(text: str, *, extended: bool = False) -> Command:
    """Turn one text frame into a command, or raise the :class:`ProtocolError` saying why not.

    ``extended``: also accept AnyCable's ``history``, ``ping`` and ``pong`` commands.
    """
    try:
        frame = encoding.loads(text)
    except encoding.DecodeError as exc:
        raise MalformedFrame(f"frame is not JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise MalformedFrame("frame is not a JSON object")
    command = frame.get("command")
    if command == "subscribe":
        identifier = _require_identifier(frame)
        history = _history_request(frame["history"]) if extended and "history" in frame else None
        return Subscribe(identifier, parse_identifier(identifier), history)
    if command == "unsubscribe":
        return Unsubscribe(_require_identifier(frame))
    if command == "message":
        identifier = _require_identifier(frame)
        raw = frame.get("data")
        if not isinstance(raw, str):
            raise InvalidCommandData("message data must be a JSON string")
        try:
            data = encoding.loads(raw)
        except encoding.DecodeError as exc:
            raise InvalidCommandData(f"message data is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidCommandData("message data is not a JSON object")
        return Perform(identifier, data)
    if extended:
        if command == "history":
            return History(_require_identifier(frame), _history_request(frame.get("history")))
        if command == "ping":
            return Ping()
        if command == "pong":
            return Pong()
    raise UnknownCommand(f"unrecognized command {command!r}")


# --- frames (server -> client) ---------------------------------------------------------------

WELCOME_FRAME = '{"type":"welcome"}'
PONG_FRAME = '{"type":"pong"}'


def welcome_frame(sid: str | None = None, restored_ids: Sequence[str] | None = None) -> str:
    """The welcome; an extended-protocol one carries the session id (``sid``), and after a
    session recovery ``restored`` and the identifiers subscribed again (``restored_ids``)."""
    if sid is None:
        return WELCOME_FRAME
    if restored_ids is None:
        return encoding.dumps({"type": "welcome", "sid": sid})
    return encoding.dumps({"type": "welcome", "sid": sid, "restored": True, "restored_ids": list(restored_ids)})


def ping_frame(timestamp: int) -> str:
    """``{"type":"ping","message":<integer Unix seconds>}``."""
    return f'{{"type":"ping","message":{int(timestamp)}}}'


def _identifier_json(identifier: str) -> str:
    return encoding.dumps(identifier)


def confirm_frame(identifier: str) -> str:
    """``{"identifier":...,"type":"confirm_subscription"}``."""
    return f'{{"identifier":{_identifier_json(identifier)},"type":"confirm_subscription"}}'


def reject_frame(identifier: str) -> str:
    """``{"identifier":...,"type":"reject_subscription"}``."""
    return f'{{"identifier":{_identifier_json(identifier)},"type":"reject_subscription"}}'


def message_frame(identifier: str, encoded_message: str) -> str:
    """A data frame. ``encoded_message`` is the message already encoded by
    :func:`cable_server.encoding.dumps`, so a broadcast is encoded once for all subscribers."""
    return f'{{"identifier":{_identifier_json(identifier)},"message":{encoded_message}}}'


def stream_message_frame(identifier: str, encoded_message: str, stream: str, epoch: str, offset: int) -> str:
    """An extended-protocol data frame: the message and its position in ``stream``."""
    return (
        f'{{"identifier":{_identifier_json(identifier)},"message":{encoded_message},'
        f'"stream_id":{encoding.dumps(stream)},"epoch":{encoding.dumps(epoch)},"offset":{offset}}}'
    )


def history_frame(identifier: str, *, confirmed: bool) -> str:
    """``confirm_history`` (the missed messages were sent) or ``reject_history`` (they are gone)."""
    kind = "confirm_history" if confirmed else "reject_history"
    return f'{{"type":"{kind}","identifier":{_identifier_json(identifier)}}}'


def disconnect_frame(reason: DisconnectReason | None, *, reconnect: bool) -> str:
    """``{"type":"disconnect","reason":...,"reconnect":<bool>}``; ``reconnect`` is always a
    boolean because the Rails client treats a missing one as ``false``."""
    return encoding.dumps({"type": "disconnect", "reason": reason, "reconnect": reconnect})


# --- per-connection state machine ------------------------------------------------------------


class State(enum.Enum):
    """Where a connection is in its life."""

    CONNECTING = "connecting"  # upgrade accepted, Connection.connect() not finished
    OPEN = "open"  # welcome sent
    CLOSED = "closed"  # rejected, disconnected or closed: nothing more is processed


@dataclass(slots=True)
class ServerProtocol:
    """One connection's protocol state: welcome gate, command buffering, decoding."""

    state: State = State.CONNECTING
    #: AnyCable's ``actioncable-v1-ext-json`` was negotiated.
    extended: bool = False
    _buffer: list[Event] = field(default_factory=list)

    def receive_text(self, text: str) -> list[Event]:
        """Feed one text frame; returns what to execute now (nothing while connecting)."""
        if self.state is State.CLOSED:
            return []
        try:
            event: Event = decode_command(text, extended=self.extended)
        except ProtocolError as exc:
            event = exc
        if self.state is State.CONNECTING:
            self._buffer.append(event)
            return []
        return [event]

    def receive_bytes(self, data: bytes) -> list[Event]:
        """Feed one binary frame. Rails ignores binary frames; so do we (with a reason)."""
        if self.state is State.CLOSED:
            return []
        event = BinaryFrame(f"binary frame of {len(data)} bytes ignored")
        if self.state is State.CONNECTING:
            self._buffer.append(event)
            return []
        return [event]

    def accept(self, sid: str | None = None, restored_ids: Sequence[str] | None = None) -> tuple[str, list[Event]]:
        """Authentication succeeded (or a session was recovered, ``restored_ids``): return the
        welcome frame (with ``sid`` on the extended protocol) and the commands buffered so far."""
        if self.state is not State.CONNECTING:
            raise RuntimeError(f"cannot accept a connection in state {self.state.value}")
        self.state = State.OPEN
        buffered, self._buffer = self._buffer, []
        if not self.extended:
            return WELCOME_FRAME, buffered
        return welcome_frame(sid, restored_ids), buffered

    def reject(self) -> str:
        """Authentication failed: the unauthorized disconnect frame; nothing more is processed."""
        self.close()
        return disconnect_frame(DisconnectReason.UNAUTHORIZED, reconnect=False)

    def close(self) -> None:
        """The connection is closing: ignore every later frame."""
        self.state = State.CLOSED
        self._buffer.clear()
