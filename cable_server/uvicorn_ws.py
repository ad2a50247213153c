"""uvicorn's sans-I/O WebSocket protocol, lighter, plus frames written straight to the socket.

Through ASGI, every frame a server sends is a ``websocket.send`` message, an awaited
coroutine, a ``websockets`` frame object and its serialization; with one writer task per
connection on top, that was ~30 µs of CPU per delivered broadcast. :class:`CableWebSocketProtocol`
puts a :class:`~cable_server.direct_write.DirectWriter` into the scope's extensions
(:mod:`cable_server.direct_write`): a session that finds it writes frames built by
:func:`~cable_server.wsframe.text_frame` with one ``transport.write`` each, and still accepts and
closes through ASGI, so the handshake, incoming frames and the close handshake stay uvicorn's
and ``websockets``' code.

The upgrade request reaches this protocol already parsed once, by uvicorn's HTTP protocol,
which hands it over re-serialized; parsing that well-formed head with ``bytes.split`` instead
of ``websockets``' line-by-line generator parser saves ~15% of the CPU a connection costs,
and the parser generator no longer keeps the request alive for the connection's lifetime.
``websockets`` still validates it (``ServerProtocol.accept``) and parses every frame.

A text message that is not UTF-8 closes the connection with 1007 and the reason Rails'
websocket-driver gives, logged once at info; uvicorn closes with no reason and logs a traceback
at ERROR for each (a client could fill the error log at will).

Every frame a client sends is counted as it is parsed, pings, pongs and continuation frames too
(a :class:`~cable_server.limits.FrameLimit`): one socket flooding pings had a core answering them
and every other client's echo waiting seconds, unseen by the command rate limit. A client past
the limit is closed with 1008 and logged once; the frames of that read go unhandled.

It also holds less per idle connection (the measure of how many clients one process holds):
the upgrade request and response are dropped once the handshake is done (their ``Headers``
were ~4 KB; the ASGI scope keeps the request headers), and the app's inbox and the writable
flag are a list and a boolean instead of an ``asyncio.Queue`` and an ``asyncio.Event`` (an
empty ``deque`` allocates a 0.5 KB block: those two held four of them).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.protocol import Protocol

from .direct_write import DIRECT_WRITE, DirectWriter
from .limits import FrameLimit, TokenBucket

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent, ASGISendEvent

__all__ = ["CableWebSocketProtocol", "websocket_protocol"]

#: The reason of the 1007 close for a text message that is not UTF-8, as websocket-driver (Rails) words it.
INVALID_UTF8_REASON: Final = "Could not decode a text frame as UTF-8"
#: The reason of the 1008 close for a client over its frame rate.
FLOOD_REASON: Final = "Too many frames"
#: Bytes of a read parsed between two checks of the frame limit: at most 682 of the smallest
#: frames (6 bytes, masked and empty), fewer than a burst.
FEED_BYTES: Final = 4096

logger = logging.getLogger("cable_server.websocket")


def _utf8(parts: list[bytes]) -> bool:
    """Whether the parts of one message make valid UTF-8 (checked again by uvicorn, which
    decodes it: ASCII, nearly every command, is told in one pass and never decoded here)."""
    if all(part.isascii() for part in parts):
        return True
    try:
        b"".join(parts).decode()
    except UnicodeDecodeError:
        return False
    return True


class _Inbox:
    """The ``receive()`` queue of one connection (one consumer), as small as it can be."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[ASGIReceiveEvent] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: ASGIReceiveEvent) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> ASGIReceiveEvent:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class _Flag:
    """``asyncio.Event``'s ``set``/``clear``/``wait``, allocating only while someone waits."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] = []

    def set(self) -> None:
        self._set = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = []

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if not self._set:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


class CableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, offering a :class:`DirectWriter` to the app.

    It builds on uvicorn's and ``websockets``' private internals, which
    :mod:`cable_server.compat` checks before the server picks this class.
    """

    #: The frames a client may send; :func:`websocket_protocol` makes a class with others.
    frame_limit: ClassVar[FrameLimit] = FrameLimit()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = _Inbox()  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        limit = self.frame_limit
        self._frames = TokenBucket(limit.rate, limit.burst) if limit.rate > 0 else None

    def data_received(self, data: bytes) -> None:
        """Feed ``websockets``; the upgrade request (the first data) is parsed here when plain.

        Frames are fed :data:`FEED_BYTES` at a time when limited: ``websockets`` answers each ping
        as it parses it, so a whole read (256 KiB: 40,000 pings) parsed before the frame limit is
        checked let a flooder have 14 bursts' worth answered before its close."""
        if not self.handshake_initiated and self._upgrade(data):
            return
        if self._frames is None or len(data) <= FEED_BYTES:
            super().data_received(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), FEED_BYTES):
            super().data_received(bytes(view[start : start + FEED_BYTES]))
            if self.close_sent:
                return

    def _upgrade(self, data: bytes) -> bool:
        """Handle ``data`` if it is exactly one plain ``GET ... HTTP/1.1`` head; else leave it."""
        head, end, rest = data.partition(b"\r\n\r\n")
        request_line, *lines = head.split(b"\r\n")
        method, _, target = request_line.partition(b" ")
        path, _, version = target.rpartition(b" ")
        if not end or rest or method != b"GET" or version != b"HTTP/1.1" or not path:
            return False
        fields: list[tuple[str, str]] = []
        try:
            for line in lines:
                name, colon, value = line.partition(b":")
                if not colon or not name:
                    return False
                fields.append((name.decode("ascii"), value.strip(b" \t").decode("latin-1")))
            request = Request(path.decode("ascii"), Headers(fields))
        except UnicodeDecodeError:
            return False
        # The request is parsed: from now on websockets' parser reads frames only.
        self.conn.parser = Protocol.parse(self.conn)
        next(self.conn.parser)
        self.handle_connect(request)
        return True

    def handle_connect(self, event: Request) -> None:
        """Accept the upgrade as uvicorn does; an upgrade that goes on to the app gets the writer."""
        super().handle_connect(event)
        if self.response.status_code == 101:
            # An ASGI extension is a dict; ours holds the writer.
            self.scope["extensions"][DIRECT_WRITE] = {"writer": DirectWriter(self)}

    def handle_events(self) -> None:
        """uvicorn's, for the frames parsed from one read while they are within the frame limit."""
        frames = self._frames
        if frames is None or self.close_sent or frames.take(len(self.conn.events)):
            super().handle_events()
            return
        self.conn.events_received()  # dropped, unhandled
        limit = self.frame_limit
        logger.warning("%s: over %g frames a second (%d at once): closing with 1008", self._peer(), limit.rate, limit.burst)
        if limit.on_flood is not None:
            limit.on_flood()
        self._close_for(CloseCode.POLICY_VIOLATION, FLOOD_REASON)

    def send_receive_event_to_app(self) -> None:
        """uvicorn's, except for a text message that is not UTF-8: the close (1007) carries
        Rails' reason and is logged at info, once."""
        if self.curr_msg_data_type == "text" and not self.close_sent and not _utf8(self.frames):
            self.frames = []
            logger.info("%s: a text frame is not UTF-8: closing with 1007", self._peer())
            self._close_for(CloseCode.INVALID_DATA, INVALID_UTF8_REASON)
            return
        super().send_receive_event_to_app()

    def _close_for(self, code: CloseCode, reason: str) -> None:
        """Close for something the client sent: the close frame out, the app told, the socket closed."""
        self.conn.send_close(code, reason)
        self.handle_parser_exception()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"

    async def send(self, message: ASGISendEvent) -> None:
        """uvicorn's ``send``; once the handshake response is out, the request and response go."""
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            del self.request, self.response


def websocket_protocol(limit: FrameLimit) -> type[CableWebSocketProtocol]:
    """:class:`CableWebSocketProtocol` with ``limit`` on the frames a client may send."""
    if limit == CableWebSocketProtocol.frame_limit:
        return CableWebSocketProtocol
    return type(CableWebSocketProtocol.__name__, (CableWebSocketProtocol,), {"frame_limit": limit})
