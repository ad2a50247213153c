"""Refusing a request to the cable before any upgrade, without an ERROR in uvicorn's log.

A WebSocket request is refused with an HTTP response (Rails' 404 ``Page not found``, or 429)
through the ASGI denial-response extension (``websocket.http.response``). uvicorn's
``websockets-sansio`` implementation, its default and the one
:class:`~cable_server.uvicorn_ws.CableWebSocketProtocol` extends, does not count that
response as the end of the handshake and, once the app returns, logs ``ERROR ASGI callable
returned without completing handshake.`` (Kludex/uvicorn#3138, open). A refused Origin is
routine, any page on any site can cause one, so every client could add an error to the log at
will. :func:`deny` marks the ASGI task that sent the response, and a filter on
``uvicorn.error`` drops that one record from marked tasks only: the same record about any other
app of the process, a real bug, is still logged. The caller logs the refusal itself, once.
"""

from __future__ import annotations

import contextvars
import logging
from typing import Final

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

__all__ = ["deny"]

#: What uvicorn logs after a denial response, taking it for a handshake the app never finished.
_INCOMPLETE_HANDSHAKE: Final = "ASGI callable returned without completing handshake."

#: Set in the ASGI task of a request :func:`deny` answered (each connection has its own task,
#: which copies the context: nothing leaks to another connection).
_denied: contextvars.ContextVar[bool] = contextvars.ContextVar("cable_server_denied", default=False)


class _DeniedHandshakeFilter(logging.Filter):
    """Drops uvicorn's incomplete-handshake error in a task that sent a denial response."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.msg == _INCOMPLETE_HANDSHAKE and _denied.get())


_FILTER: Final = _DeniedHandshakeFilter()


async def deny(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    """Answer ``response`` instead of the upgrade (or, to a plain HTTP request, as it is)."""
    if scope["type"] != "websocket":
        await response(scope, receive, send)
        return
    # Installed here, not at start-up, so that every way of serving the cable has it; adding
    # the same filter again is a no-op.
    logging.getLogger("uvicorn.error").addFilter(_FILTER)
    _denied.set(True)
    await WebSocket(scope, receive, send).send_denial_response(response)
