"""uvicorn's HTTP protocols with every request head bounded in bytes and in time.

uvicorn gives h11 a cap on an incomplete request (16 KiB) but httptools none, and neither a
deadline for the head: one client sending a header line with no end grew a server by hundreds
of MB, and a thousand half-sent upgrade requests were all still held 90 s later. Every
WebSocket of the cable starts as an HTTP request, so :func:`guarded_protocol` wraps whichever
parser uvicorn would use: a head over ``max_bytes`` gets ``431`` and a close, one not complete
within ``timeout`` seconds a close.

Where a head starts and ends is the parser's word, not a guess from the bytes: httptools'
callbacks (``on_message_begin``, ``on_headers_complete``; a header after that is a chunked
body's trailer, bounded with the head), h11's state (``IDLE`` until a whole request head was
read, trailers bounded by h11 itself). Bytes are counted per read from the moment a head is
awaited (the connection's start, the end of the previous response) to the end of the head, so a
head that arrives whole in one read is bounded like one that trickles, and pipelined requests
and trailers are bounded too. A request whose body the app did not read
(or that never ends) is not kept alive: the connection is closed shortly after the response.
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
#: What ends a request head: a blank line (parsers take a bare LF for CRLF).
_HEAD_ENDS: Final = (b"\r\n\r\n", b"\n\n", b"\n\r\n", b"\r\n\n")
#: Seconds a connection being closed is still read (and what it sends dropped): closing a socket
#: with unread data sends a reset, and the client could lose the answer.
_LINGER: Final = 1.0


def _httptools() -> type[asyncio.Protocol] | None:
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # httptools is the speedups extra
        return None
    return HttpToolsProtocol


def guarded_protocol(max_bytes: int, timeout: float, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """``base`` (httptools' protocol when installed, else h11's) with each request head bounded."""
    parent: Any = base or _httptools() or H11Protocol

    class Guarded(parent):  # type: ignore[misc]
        _head_bytes = 0
        _last_bytes = b""  # the last bytes of the head's previous read
        _head_timer: asyncio.TimerHandle | None = None
        _in_head = False  # reading a head (or trailers): its bytes count
        _in_message = False  # a request not yet read to its end
        _had_head = False
        _closing = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._closing:
                return  # read and dropped until the close
            # Awaiting a head (armed; with h11, idle) counts as reading one: with httptools the
            # head's first read is parsed whole before on_message_begin says a head began.
            awaiting = self._head_timer is not None and self._h11_idle() is not False
            if (self._in_head or awaiting) and not self._head_within_limit(data):
                self._refuse()
                return
            super().data_received(data)
            if self._head_timer is not None and self._h11_idle() is False:
                self._head_read()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.transport.is_closing() or self._closing:
                return
            if self._body_pending():  # not read by the app, maybe endless: not kept alive
                self._linger_close()
            elif not self._in_head:
                self._arm()  # the next head, when it comes (idle until then: uvicorn's keep-alive)

        # httptools' parser callbacks (h11 has none of these: _h11_idle() tells instead)

        def on_message_begin(self) -> None:
            self._in_message = self._in_head = True
            if self._head_timer is None:  # a pipelined head, begun in the read that ended a body
                self._arm()
            super().on_message_begin()

        def on_header(self, name: bytes, value: bytes) -> None:
            if not self._in_head:  # after the head: a trailer, bounded with it
                self._in_head = True
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head_read()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_message = self._in_head = False
            super().on_message_complete()

        # ---

        def _head_within_limit(self, data: bytes) -> bool:
            """Count a read of the head; whether the head stays within ``max_bytes``.

            With httptools, a read that takes the count past the limit may still end the head in
            time and then carry a body (a large POST written at once) or the next request: the
            blank line that ends the head, within the limit, passes it (a trailer after it counts
            from the next read on). With h11 every byte read while it is idle counts: h11 parses
            trailers itself, bounded by its own limit on incomplete events.
            """
            budget = max_bytes - self._head_bytes
            before, self._last_bytes = self._last_bytes, data[-3:]  # a blank line may be cut in two
            begun = self._head_bytes > 0 or self._in_head
            self._head_bytes += len(data)
            if len(data) <= budget:
                return True
            if self._h11_idle() is not None:
                return False
            window = before + (data if begun else data.lstrip(b"\r\n"))  # parsers skip blank lines first
            limit = len(before) + budget
            return any(window.find(end, 0, limit + len(end)) >= 0 for end in _HEAD_ENDS)

        def _head_read(self) -> None:
            self._in_head = False
            self._had_head = True
            self._disarm()

        def _h11_idle(self) -> bool | None:
            """h11: whether no request head was read yet; ``None`` with httptools."""
            conn = getattr(self, "conn", None)
            return conn.their_state is h11.IDLE if conn is not None else None

        def _body_pending(self) -> bool:
            """Whether the request just answered still has body to come (not a pipelined next one)."""
            conn = getattr(self, "conn", None)
            if conn is not None:
                return conn.their_state is h11.SEND_BODY
            return self._in_message and not self._in_head and not self.pipeline

        def _arm(self) -> None:
            self._disarm()
            self._head_bytes = 0
            self._last_bytes = b""
            self._head_timer = asyncio.get_running_loop().call_later(timeout, self._too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self) -> None:
            logger.info("%s: request head over %d bytes: 431 and close", _peer(self.transport), max_bytes)
            self.transport.write(_TOO_LARGE)
            self._linger_close()

        def _linger_close(self) -> None:
            self._disarm()
            self._closing = True
            if self.transport.can_write_eof():
                self.transport.write_eof()
            asyncio.get_running_loop().call_later(_LINGER, self.transport.close)

        def _too_slow(self) -> None:
            self._head_timer = None
            # A first request, or the next one begun: its head is late. Nothing begun after a
            # response (or a pipelined request already read) is uvicorn's keep-alive to time.
            if self._head_bytes or self._in_head or not self._had_head:
                logger.debug("%s: no complete request head in %.0f s: closing", _peer(self.transport), timeout)
                self.transport.close()

    Guarded.__name__ = Guarded.__qualname__ = f"Guarded{parent.__name__}"
    return Guarded


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
