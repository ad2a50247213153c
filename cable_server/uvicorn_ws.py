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

What it holds of input that is not whole yet (a :class:`~cable_server.limits.IncompleteLimit`):
the bytes of an unfinished frame in ``websockets``' reader, and the parts of an unfinished
fragmented message uvicorn keeps. A socket that starts holding some gets a deadline (one timer);
the deadline moves on when a message completes with more input held behind it, and the timer
goes when nothing is held. Past the deadline, or when a read would take the bytes held by all the
sockets of the client's address past their budget (:class:`~cable_server.limits.HeldInput`, one
per protocol class), the socket is closed with 1008, logged once and counted. A read that ends
on a frame boundary, nearly every read, costs two lengths and a test.

It also holds less per idle connection (the measure of how many clients one process holds):
the upgrade request and response are dropped once the handshake is done (their ``Headers``
were ~4 KB; the ASGI scope keeps the request headers), and the app's inbox and the writable
flag are a list and a boolean instead of an ``asyncio.Queue`` and an ``asyncio.Event`` (an
empty ``deque`` allocates a 0.5 KB block: those two held four of them).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.frames import CloseCode
from websockets.http11 import Request
from websockets.protocol import Protocol, State

from .direct_write import DIRECT_WRITE, DirectWriter
from .limits import FrameLimit, HeldInput, IncompleteLimit, LimitKind, TokenBucket, address_key

if TYPE_CHECKING:
    from uvicorn._types import ASGIReceiveEvent, ASGISendEvent

__all__ = ["CableWebSocketProtocol", "websocket_protocol"]

#: The reason of the 1007 close for a text message that is not UTF-8, as websocket-driver (Rails) words it.
INVALID_UTF8_REASON: Final = "Could not decode a text frame as UTF-8"
#: The reason of the 1008 close for a client over its frame rate.
FLOOD_REASON: Final = "Too many frames"
#: The reasons of the 1008 closes for input left incomplete: past its deadline, past the budget of
#: the client's address.
TIMEOUT_REASON: Final = "Incomplete message timed out"
BUDGET_REASON: Final = "Too much incomplete input from this address"
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


@dataclass(slots=True)
class _Holding:
    """A socket holding incomplete input: under which address it is counted, how many bytes
    :class:`HeldInput` has on its account, when its input must be whole (event loop time) and
    the timer that checks; ``progressed``: a message completed since the deadline was set."""

    address: str
    held: int = 0
    deadline: float = 0.0
    timer: asyncio.TimerHandle | None = None
    progressed: bool = False


class CableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol, offering a :class:`DirectWriter` to the app.

    It builds on uvicorn's and ``websockets``' private internals, which
    :mod:`cable_server.compat` checks before the server picks this class.
    """

    #: The frames a client may send; :func:`websocket_protocol` makes a class with others.
    frame_limit: ClassVar[FrameLimit] = FrameLimit()
    #: What a client may leave incomplete, and the bytes each address holds, for every socket of
    #: this class (:func:`websocket_protocol` makes a class with others, and its own count).
    incomplete_limit: ClassVar[IncompleteLimit] = IncompleteLimit()
    held_input: ClassVar[HeldInput] = HeldInput(incomplete_limit.per_address)
    #: Not held yet: set by the first read that leaves input incomplete (a class default costs an
    #: idle connection nothing).
    _holding: _Holding | None = None

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
        else:
            self._feed_slices(data)
        conn = self.conn
        held = len(conn.reader.buffer) + (conn.current_size or 0)
        if held or self._holding is not None:
            self._hold(held)

    def _feed_slices(self, data: bytes) -> None:
        view = memoryview(data)
        for start in range(0, len(data), FEED_BYTES):
            super().data_received(bytes(view[start : start + FEED_BYTES]))
            if self.close_sent:
                return

    def _hold(self, held: int) -> None:
        """Account for the ``held`` bytes of incomplete input a read left: the address's count,
        the deadline (set when the socket starts holding, moved on when a message completed
        during the read: what is held now came after it), the close when either is past."""
        holding = self._holding
        limit = self.incomplete_limit
        if not held or self.transport.is_closing() or not (limit.timeout or limit.per_address):
            self._let_go()
            return
        if holding is None:
            holding = self._holding = _Holding(self._address())
            if limit.timeout:
                holding.deadline = self.loop.time() + limit.timeout
                holding.timer = self.loop.call_later(limit.timeout, self._check_deadline)
        elif holding.progressed:
            holding.deadline = self.loop.time() + limit.timeout  # the timer sees it when it fires
        holding.progressed = False
        if self.held_input.hold(holding.address, holding.held, held):
            holding.held = held
            return
        self._refuse(
            LimitKind.INCOMPLETE_BYTES_PER_ADDRESS,
            BUDGET_REASON,
            "%s: %s would hold %d bytes of incomplete input with this read, over %d (max_incomplete_bytes_per_address)",
            self._peer(),
            holding.address,
            self.held_input.held(holding.address) - holding.held + held,
            limit.per_address,
        )

    def _check_deadline(self) -> None:
        """The timer of a socket holding incomplete input: close it if its deadline is past,
        else wait for the deadline as it is now.

        While the server is not reading (uvicorn pauses reading from when a message is queued
        until the app takes it: an action of this connection is still running) the rest of a
        frame waits in the kernel, through no fault of the client's: from a deadline that passes
        then, it is moved on every tenth of a deadline while reading stays paused, so that the
        client has at least nine tenths of one once reading resumes."""
        holding = self._holding
        if holding is None or self.transport.is_closing():  # connection_lost lets go
            return
        timeout, now = self.incomplete_limit.timeout, self.loop.time()
        if self.read_paused:
            holding.deadline = max(holding.deadline, now + timeout)
            holding.timer = self.loop.call_later(timeout / 10, self._check_deadline)
            return
        left = holding.deadline - now
        if left > 0:
            holding.timer = self.loop.call_later(left, self._check_deadline)
            return
        holding.timer = None
        self._refuse(
            LimitKind.INCOMPLETE_TIMEOUT,
            TIMEOUT_REASON,
            "%s: a frame or message still incomplete after %g s, %d bytes held (incomplete_timeout)",
            self._peer(),
            timeout,
            holding.held,
        )

    def _refuse(self, kind: LimitKind, reason: str, message: str, *args: object) -> None:
        """Close for incomplete input (1008), log it once, count it, and drop what was held."""
        logger.warning(message + ": closing with 1008", *args)
        if self.incomplete_limit.on_hit is not None:
            self.incomplete_limit.on_hit(kind)
        self._close_for(CloseCode.POLICY_VIOLATION, reason)
        self.conn.reader.discard()  # no more reads come: the transport is closing
        self.frames = []
        self._let_go()

    def _let_go(self) -> None:
        """Hold nothing any more: the address's count goes down, the timer goes."""
        holding, self._holding = self._holding, None
        if holding is None:
            return
        self.held_input.hold(holding.address, holding.held, 0)
        if holding.timer is not None:
            holding.timer.cancel()

    def _address(self) -> str:
        """The address incomplete input is counted by: the scope's client, as
        ``max_connections_per_address`` counts connections (behind a trusted proxy, uvicorn's
        proxy-headers middleware has put the forwarded address there by the time the app runs);
        the TCP peer's before the upgrade."""
        scope = getattr(self, "scope", None)
        client = scope.get("client") if scope is not None else self.client
        return address_key(client[0]) if client else "?"

    def connection_lost(self, exc: Exception | None) -> None:
        """uvicorn's, after letting go of the incomplete input held (and its timer)."""
        self._let_go()
        super().connection_lost(exc)

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
        Rails' reason and is logged at info, once. A message completing is progress for the
        deadline of incomplete input."""
        if self._holding is not None:
            self._holding.progressed = True
        if self.curr_msg_data_type == "text" and not self.close_sent and not _utf8(self.frames):
            self.frames = []
            logger.info("%s: a text frame is not UTF-8: closing with 1007", self._peer())
            self._close_for(CloseCode.INVALID_DATA, INVALID_UTF8_REASON)
            return
        super().send_receive_event_to_app()

    def _close_for(self, code: CloseCode, reason: str) -> None:
        """Close for something the client sent: the close frame out, the app told, the socket
        closed. Before the app accepted (no response sent yet), or once closing, there is no close
        frame to send: the socket is closed, and uvicorn tells the app (1006)."""
        if self.conn.state is State.OPEN:
            self.conn.send_close(code, reason)
            self.handle_parser_exception()
        else:
            self.close_sent = True
            self.transport.close()

    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "?"

    async def send(self, message: ASGISendEvent) -> None:
        """uvicorn's ``send``; once the handshake response is out, the request and response go."""
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            del self.request, self.response


def websocket_protocol(
    frames: FrameLimit | None = None, incomplete: IncompleteLimit | None = None
) -> type[CableWebSocketProtocol]:
    """:class:`CableWebSocketProtocol` with ``frames`` on the frames a client may send and
    ``incomplete`` on what it may leave incomplete (the defaults for ``None``); a new class has
    its own count of bytes held per address."""
    base = CableWebSocketProtocol
    frames = base.frame_limit if frames is None else frames
    incomplete = base.incomplete_limit if incomplete is None else incomplete
    if frames == base.frame_limit and incomplete == base.incomplete_limit:
        return base
    attributes = {"frame_limit": frames, "incomplete_limit": incomplete, "held_input": HeldInput(incomplete.per_address)}
    return type(base.__name__, (base,), attributes)
