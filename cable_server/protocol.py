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
    "PROTOCOL_UNSUPPORTED",
    "PROTOCOL_V1_JSON",
    "SUPPORTED_PROTOCOLS",
    "WELCOME_FRAME",
    "Command",
    "DisconnectReason",
    "Event",
    "Perform",
    "ServerProtocol",
    "State",
    "Subscribe",
    "Unsubscribe",
    "confirm_frame",
    "decode_command",
    "disconnect_frame",
    "message_frame",
    "parse_identifier",
    "ping_frame",
    "reject_frame",
    "select_subprotocol",
]

PROTOCOL_V1_JSON = "actioncable-v1-json"
PROTOCOL_UNSUPPORTED = "actioncable-unsupported"
#: The server's list, in Rails' order (``ActionCable::INTERNAL[:protocols]``).
SUPPORTED_PROTOCOLS = (PROTOCOL_V1_JSON, PROTOCOL_UNSUPPORTED)


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
class Subscribe:
    """``{"command":"subscribe","identifier":...}``; ``params`` is the decoded identifier."""

    identifier: str
    params: dict[str, Any]

    @property
    def channel(self) -> str:
        return str(self.params["channel"])


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """``{"command":"unsubscribe","identifier":...}``."""

    identifier: str


@dataclass(frozen=True, slots=True)
class Perform:
    """``{"command":"message","identifier":...,"data":"<json object>"}``.

    ``data`` is the decoded object, ``"action"`` included, as Rails passes it to the action.
    ``action`` is ``None`` when the client gave none (or an empty one): route to ``receive``.
    """

    identifier: str
    data: dict[str, Any] = field(hash=False)

    @property
    def action(self) -> str | None:
        action = self.data.get("action")
        return action if isinstance(action, str) and action else None


Command = Subscribe | Unsubscribe | Perform
Event = Command | ProtocolError


def parse_identifier(identifier: object) -> dict[str, Any]:
    """Decode a subscription identifier into channel params; it must be a JSON object string
    with a string ``channel``."""
    if not isinstance(identifier, str):
        raise InvalidIdentifier(f"identifier must be a string, got {type(identifier).__name__}")
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
    return identifier


def decode_command(text: str) -> Command:
    """Turn one text frame into a command, or raise the :class:`ProtocolError` saying why not."""
    try:
        frame = encoding.loads(text)
    except encoding.DecodeError as exc:
        raise MalformedFrame(f"frame is not JSON: {exc}") from exc
    if not isinstance(frame, dict):
        raise MalformedFrame("frame is not a JSON object")
    command = frame.get("command")
    if command == "subscribe":
        identifier = _require_identifier(frame)
        return Subscribe(identifier, parse_identifier(identifier))
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
    raise UnknownCommand(f"unrecognized command {command!r}")


# --- frames (server -> client) ---------------------------------------------------------------

WELCOME_FRAME = '{"type":"welcome"}'


def ping_frame(timestamp: int) -> str:
    """``{"type":"ping","message":<integer Unix seconds>}``."""
    return f'{{"type":"ping","message":{int(timestamp)}}}'


def _identifier_json(identifier: str) -> str:
    return encoding.dumps(identifier)


def confirm_frame(identifier: str) -> str:
    return f'{{"identifier":{_identifier_json(identifier)},"type":"confirm_subscription"}}'


def reject_frame(identifier: str) -> str:
    return f'{{"identifier":{_identifier_json(identifier)},"type":"reject_subscription"}}'


def message_frame(identifier: str, encoded_message: str) -> str:
    """A data frame. ``encoded_message`` is the message already encoded by
    :func:`cable_server.encoding.dumps`, so a broadcast is encoded once for all subscribers."""
    return f'{{"identifier":{_identifier_json(identifier)},"message":{encoded_message}}}'


def disconnect_frame(reason: DisconnectReason | None, *, reconnect: bool) -> str:
    """``{"type":"disconnect","reason":...,"reconnect":<bool>}``; ``reconnect`` is always a
    boolean because the Rails client treats a missing one as ``false``."""
    return encoding.dumps({"type": "disconnect", "reason": reason, "reconnect": reconnect})


# --- per-connection state machine ------------------------------------------------------------


class State(enum.Enum):
    CONNECTING = "connecting"  # upgrade accepted, Connection.connect() not finished
    OPEN = "open"  # welcome sent
    CLOSED = "closed"  # rejected, disconnected or closed: nothing more is processed


@dataclass(slots=True)
class ServerProtocol:
    """One connection's protocol state: welcome gate, command buffering, decoding."""

    state: State = State.CONNECTING
    _buffer: list[Event] = field(default_factory=list)

    def receive_text(self, text: str) -> list[Event]:
        """Feed one text frame; returns what to execute now (nothing while connecting)."""
        if self.state is State.CLOSED:
            return []
        try:
            event: Event = decode_command(text)
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

    def accept(self) -> tuple[str, list[Event]]:
        """Authentication succeeded: return the welcome frame and the commands buffered so far."""
        if self.state is not State.CONNECTING:
            raise RuntimeError(f"cannot accept a connection in state {self.state.value}")
        self.state = State.OPEN
        buffered, self._buffer = self._buffer, []
        return WELCOME_FRAME, buffered

    def reject(self) -> str:
        """Authentication failed: the unauthorized disconnect frame; nothing more is processed."""
        self.close()
        return disconnect_frame(DisconnectReason.UNAUTHORIZED, reconnect=False)

    def close(self) -> None:
        self.state = State.CLOSED
        self._buffer.clear()
