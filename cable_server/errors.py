"""Exceptions, by cause.

::

    CableError
    ├── ProtocolError              a client frame that is not a valid command (logged, ignored)
    │   ├── MalformedFrame         not JSON, or not a JSON object
    │   ├── BinaryFrame            a binary frame (ActionCable speaks text only)
    │   ├── UnknownCommand         "command" missing or not subscribe/unsubscribe/message
    │   ├── InvalidIdentifier      identifier missing, not a string, not Unicode, not a JSON object, no channel
    │   └── InvalidCommandData     "data" of a message is not a JSON object string
    ├── SubscriptionError          a valid command that cannot be carried out (logged, ignored)
    │   ├── UnknownSubscription    unsubscribe/message for an identifier not subscribed
    │   ├── UnknownChannel         subscribe to a channel that is not registered
    │   └── UnknownAction          message naming no action method of the channel
    ├── LimitExceeded              a command over one of the client's limits (refused, logged, counted)
    ├── UnauthorizedError          raised by Connection.reject_unauthorized_connection()
    │   └── InvalidToken           a connection's signed token is missing or does not check out (auth)
    ├── InvalidMessage             a Rails signed or encrypted cookie that does not check out (rails)
    └── PubSubError                the pub/sub backend failed to subscribe or publish

Rails answers none of the ``ProtocolError``/``SubscriptionError`` cases on the wire; the
connection stays usable. Where this server answers differently (an unknown channel is
rejected by default), the session decides that, not the exception.
"""

from __future__ import annotations

__all__ = [
    "BinaryFrame",
    "CableError",
    "InvalidCommandData",
    "InvalidIdentifier",
    "InvalidToken",
    "LimitExceeded",
    "MalformedFrame",
    "ProtocolError",
    "PubSubError",
    "SubscriptionError",
    "UnauthorizedError",
    "UnknownAction",
    "UnknownChannel",
    "UnknownCommand",
    "UnknownSubscription",
]


class CableError(Exception):
    """Base class of every error this package raises on purpose."""


class ProtocolError(CableError):
    """A client frame that is not a valid ActionCable command."""


class MalformedFrame(ProtocolError):
    """A frame that is not a JSON object."""

    pass


class BinaryFrame(ProtocolError):
    """A binary WebSocket frame: ignored, as Rails does."""

    pass


class UnknownCommand(ProtocolError):
    """A frame whose ``command`` is not one the protocol knows."""

    pass


class InvalidIdentifier(ProtocolError):
    """An identifier that is not a JSON object string with a string ``channel``, or that holds a
    lone surrogate (no answer could echo it)."""

    pass


class InvalidCommandData(ProtocolError):
    """A ``message`` command whose ``data`` is not a JSON object string."""

    pass


class SubscriptionError(CableError):
    """A well-formed command that names something that does not exist."""


class UnknownSubscription(SubscriptionError):
    """A command for an identifier that is not subscribed on this connection."""

    pass


class UnknownChannel(SubscriptionError):
    """A ``subscribe`` naming no registered channel."""

    pass


class UnknownAction(SubscriptionError):
    """A ``message`` naming an action the channel does not have."""

    pass


class LimitExceeded(CableError):
    """A command that would take the client over a limit; ``kind`` is a
    :class:`cable_server.limits.LimitKind` value, the label it is counted under."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class UnauthorizedError(CableError):
    """The connection is refused: the client gets the ``unauthorized`` disconnect frame."""


class InvalidToken(UnauthorizedError):
    """A connection's token is missing, malformed, wrongly signed or expired.

    ``reason`` is one of :class:`cable_server.auth.TokenProblem`; the message never holds the token.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


class PubSubError(CableError):
    """The pub/sub backend could not subscribe or publish."""
