"""The direct-write extension: frames a session writes straight to its connection's transport.

A WebSocket protocol that can take frames without an ASGI ``send`` (ours,
:class:`~cable_server.uvicorn_ws.CableWebSocketProtocol`) puts a :class:`DirectWriter` into the
scope's extensions under :data:`DIRECT_WRITE` (key ``writer``); a session that finds none sends
through ASGI. This module imports nothing from uvicorn: a session must load, and serve through
ASGI, even when the uvicorn or ``websockets`` installed is not one the fast path was verified
against (:mod:`cable_server.compat`).
"""

from __future__ import annotations

import asyncio
from typing import Final, Protocol

from .wsframe import text_frame

__all__ = ["DIRECT_WRITE", "DirectWriter", "WritableConnection"]

#: The scope extension under which the connection's :class:`DirectWriter` is found.
DIRECT_WRITE: Final = "cable_server.direct_write"


class WritableConnection(Protocol):
    """What the writer reads of the WebSocket protocol object that owns the transport."""

    transport: asyncio.Transport
    close_sent: bool
    disconnected: bool


class DirectWriter:
    """Writes text frames to one connection's transport, in call order, without awaiting."""

    __slots__ = ("_connection",)

    def __init__(self, connection: WritableConnection) -> None:
        self._connection = connection

    def write_text(self, text: str) -> int:
        """Send one text frame; returns the bytes still waiting in the transport's buffer,
        or -1 when the connection can no longer take frames (closing or closed)."""
        connection = self._connection
        transport = connection.transport
        if connection.close_sent or connection.disconnected or transport.is_closing():
            return -1
        transport.write(text_frame(text))
        return transport.get_write_buffer_size()
