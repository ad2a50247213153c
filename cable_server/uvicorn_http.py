"""uvicorn's HTTP protocols with every request head bounded in bytes and in time.

uvicorn gives h11 a cap on an incomplete request (16 KiB) but httptools none, and neither a
deadline for the head: one client sending a header line with no end grew a server by hundreds
of MB, and a thousand half-sent upgrade requests were all still held 90 s later. Every
WebSocket of the cable starts as an HTTP request, so :func:`guarded_protocol` wraps whichever
parser uvicorn would use: a head (request line and headers) over ``max_bytes`` gets ``431`` and
a close, one not complete within ``timeout`` seconds a close. A head is found complete by its
blank line, independently of the parser; once the response is sent and the request's body
read, the next head on a keep-alive connection is bounded the same way (a connection idle
between requests is left to uvicorn's keep-alive timeout).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["guarded_protocol"]

logger = logging.getLogger("cable_server.http")

_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 32\r\nconnection: close\r\n\r\nRequest header fields too large\n"
)


#: What ends a request head: a blank line (CRLF, or the bare LF that lenient parsers accept).
_HEAD_ENDS: Final = (b"\r\n\r\n", b"\n\n", b"\n\r\n")
#: Seconds a refused connection is still read (and dropped) before it is closed.
_LINGER: Final = 1.0


def _default_parser() -> type[asyncio.Protocol]:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is the speedups extra
        return H11Protocol
    return HttpToolsProtocol


def guarded_protocol(max_bytes: int, timeout: float, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """``base`` (httptools' protocol when installed, else h11's) with each request head bounded."""
    parent: Any = base or _default_parser()

    class Guarded(parent):  # type: ignore[misc]
        _head_bytes = 0
        _began = False
        _tail = b""
        _head_timer: asyncio.TimerHandle | None = None
        _had_head = False
        _refused = False
        _in_message = False
        _arm_after_body = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return  # read and dropped until the close: the 431 is not lost to a reset
            if self._head_timer is not None:
                if self._head_complete(data):
                    self._disarm()
                    self._had_head = True
                else:
                    self._head_bytes += len(data)
                    if self._head_bytes > max_bytes:
                        self._refuse()
                        return
            super().data_received(data)

        def _head_complete(self, data: bytes) -> bool:
            """Whether ``data`` ends the head: a blank line after the request line began (parsers
            skip empty lines before a request line, so those end nothing)."""
            if not self._began:
                data = data.lstrip(b"\r\n")
                if not data:
                    return False
                self._began = True
            window = self._tail + data
            self._tail = window[-3:]
            return any(end in window for end in _HEAD_ENDS)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport.is_closing():
                return
            if self._body_pending():  # its rest is no head: bound the next head once it is read
                self._arm_after_body = True
            else:
                self._arm()

        def _body_pending(self) -> bool:
            conn = getattr(self, "conn", None)  # h11's connection state
            return conn.their_state is h11.SEND_BODY if conn is not None else self._in_message

        if hasattr(parent, "on_message_complete"):  # httptools' parser callbacks

            def on_message_begin(self) -> None:
                self._in_message = True
                super().on_message_begin()

            def on_message_complete(self) -> None:
                self._in_message = False
                super().on_message_complete()
                if self._arm_after_body and not self.transport.is_closing():
                    self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._arm_after_body = False
            self._head_bytes, self._tail, self._began = 0, b"", False
            self._head_timer = asyncio.get_running_loop().call_later(timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self) -> None:
            """431, then read and drop for a moment before closing: closing a socket with unread
            data would send a reset, and the client could lose the answer."""
            self._disarm()
            self._refused = True
            logger.info("%s: request head over %d bytes: 431 and close", _peer(self.transport), max_bytes)
            transport = self.transport
            transport.write(_TOO_LARGE)
            if transport.can_write_eof():
                transport.write_eof()
            asyncio.get_running_loop().call_later(_LINGER, transport.close)

        def _too_slow(self) -> None:
            self._head_timer = None
            # A first request, or the next one begun: its head is late. Nothing begun after a
            # response (or a pipelined request already read) is uvicorn's keep-alive to time.
            if self._head_bytes or not self._had_head:
                logger.debug("%s: no complete request head in %.0f s: closing", _peer(self.transport), timeout)
                self.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{parent.__name__}"
    return Guarded


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
