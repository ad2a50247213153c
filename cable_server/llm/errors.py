"""Why a generation failed, in categories a frontend can act on, with a message a human can read.

The message sent to clients is ours, one sentence per kind of failure; what the provider said
(which can name the API key's last digits, the organisation, a project or an internal host) is
the error's ``detail``: logged, and sent only where ``expose_provider_errors`` is set, since an
error frame reaches every reader of the room and is kept for ``resume``.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import openai
from redis.exceptions import RedisError

from ..errors import CableError, PubSubError

__all__ = ["ErrorCategory", "GenerationError", "classify"]


class ErrorCategory(enum.StrEnum):
    """What went wrong, as the ``error.category`` of an ``error`` frame."""

    #: The request itself was refused before reaching the model (empty or too long prompt).
    INVALID_REQUEST = "invalid_request"
    #: The request names a room its subscription may not act on (an anonymous ``user_id`` that is
    #: not the subscription's own room).
    FORBIDDEN = "forbidden"
    #: The room already has a generation running.
    BUSY = "busy"
    #: Too many requests are waiting for a free slot.
    OVERLOADED = "overloaded"
    #: The sender's share of the model budget is spent for now (``retry_after`` says for how long).
    RATE_LIMITED = "rate_limited"
    #: The API key was refused (401/403).
    AUTH = "auth"
    #: The provider's rate limit or quota (429).
    RATE_LIMIT = "rate_limit"
    #: The provider refused the request (400/404/422: unknown model, context too long...).
    BAD_REQUEST = "bad_request"
    #: The provider failed (5xx).
    UPSTREAM = "upstream"
    #: No first token in time.
    TIMEOUT = "timeout"
    #: Tokens stopped arriving mid-answer.
    STALLED = "stalled"
    #: The connection to the provider failed or was cut.
    CONNECTION = "connection"
    #: The store or pub/sub the processes share (Redis) failed: the answer could not go on.
    UNAVAILABLE = "unavailable"
    #: The provider sent something that is not a valid chat completion stream.
    PROTOCOL = "protocol"
    #: A bug on our side.
    INTERNAL = "internal"


class GenerationError(CableError):
    """A generation ended without an answer; sent to the client as an ``error`` frame."""

    def __init__(
        self,
        category: ErrorCategory,
        message: str,
        *,
        message_id: str | None = None,
        detail: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message if detail is None else f"{message} ({detail})")
        self.category = category
        self.message = message
        #: ``busy``: the answer being written, which the client may ``stop``.
        self.message_id = message_id
        #: What the model provider said, for the log (see the module's docstring).
        self.detail = detail
        #: ``rate_limited``: seconds until the same request would be taken.
        self.retry_after = retry_after

    def as_dict(self, *, detail: bool = False) -> dict[str, Any]:
        """``{"category": ..., "message": ...}`` (and ``retry_after`` when known), the ``error``
        of an ``error`` frame; the provider's ``detail`` appended to the message only when asked."""
        message = f"{self.message} {self.detail}" if detail and self.detail else self.message
        error: dict[str, Any] = {"category": self.category.value, "message": message}
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        return error


def _upstream_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        detail = body.get("error", body) if isinstance(body.get("error"), dict) else body
        message = detail.get("message")
        if isinstance(message, str) and message:
            return message
    return f"HTTP {error.status_code}"


def _refused(error: BaseException) -> bool:
    """Whether an error the SDK calls a timeout was a connection refused or reset: its aiohttp
    transport maps every ``ClientConnectionError`` to ``ConnectTimeout``, refusals included."""
    cause = error.__cause__ or error.__context__
    seen = 0
    while cause is not None and seen < 10:
        if isinstance(cause, OSError) and not isinstance(cause, TimeoutError):
            return True
        cause, seen = cause.__cause__ or cause.__context__, seen + 1
    return False


def classify(error: BaseException, *, started: bool) -> GenerationError:
    """Map an exception of the SDK or of the stream to a :class:`GenerationError`.

    ``started``: a token was already sent (a timeout is then a stall, not a slow start).
    """
    if isinstance(error, GenerationError):
        return error
    if isinstance(error, openai.APITimeoutError) and _refused(error):
        return GenerationError(ErrorCategory.CONNECTION, "The connection to the model provider failed or was cut.")
    if isinstance(error, TimeoutError | openai.APITimeoutError):
        if started:
            return GenerationError(ErrorCategory.STALLED, "The model stopped sending tokens mid-answer.")
        return GenerationError(ErrorCategory.TIMEOUT, "The model did not start answering in time.")
    if isinstance(error, openai.APIStatusError):
        detail = _upstream_message(error)
        status = error.status_code
        if status in (401, 403):
            return GenerationError(ErrorCategory.AUTH, "The model provider refused the server's credentials.", detail=detail)
        if status == 429:
            return GenerationError(ErrorCategory.RATE_LIMIT, "The model provider's rate limit was reached.", detail=detail)
        if status >= 500:
            return GenerationError(ErrorCategory.UPSTREAM, f"The model provider failed (HTTP {status}).", detail=detail)
        refused = f"The model provider refused the request (HTTP {status})."
        return GenerationError(ErrorCategory.BAD_REQUEST, refused, detail=detail)
    if isinstance(error, openai.APIConnectionError):
        return GenerationError(ErrorCategory.CONNECTION, "The connection to the model provider failed or was cut.")
    if isinstance(error, openai.APIError):  # an error event inside the stream
        return GenerationError(ErrorCategory.UPSTREAM, "The model provider reported an error.", detail=error.message)
    if isinstance(error, RedisError | PubSubError):
        return GenerationError(ErrorCategory.UNAVAILABLE, "The chat lost its connection to its shared store; try again.")
    if isinstance(error, json.JSONDecodeError):  # an event whose data is not JSON
        return GenerationError(ErrorCategory.PROTOCOL, "The model provider sent a malformed stream.")
    return GenerationError(ErrorCategory.INTERNAL, "The answer failed because of an internal error.")
