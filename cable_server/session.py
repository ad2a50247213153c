"""One WebSocket connection: the I/O around :class:`~cable_server.protocol.ServerProtocol`.

Per connection there is one reader (the ASGI task itself, which executes commands strictly in
arrival order). Frames go out in the order they were produced, and a broadcast never waits on
a socket: served by :class:`~cable_server.uvicorn_ws.CableWebSocketProtocol`, a frame is
written to the transport at once (``DirectWriter``); under any other ASGI server, a writer
task drains a queue of frames through ASGI ``send``. Either way the bytes waiting for one
client are bounded (``max_send_buffer``). Everything a session starts ends with it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import logging
import secrets
import time
import typing
from typing import TYPE_CHECKING, Any, Final

from . import encoding, logs
from .connection import Connection
from .direct_write import DIRECT_WRITE, DirectWriter
from .errors import CableError, LimitExceeded, ProtocolError, PubSubError, UnauthorizedError
from .limits import Admission, CommandLimiter, LimitKind
from .metrics import error_category
from .protocol import (
    PONG_FRAME,
    DisconnectReason,
    History,
    Perform,
    Ping,
    Pong,
    ServerProtocol,
    State,
    Subscribe,
    Unsubscribe,
    disconnect_frame,
    parse_identifier,
)
from .restore import Snapshot
from .streams import Listener
from .subscriptions import Subscriptions

if TYPE_CHECKING:
    from starlette.types import Receive, Send
    from starlette.websockets import WebSocket

    from .protocol import Event
    from .server import CableServer

__all__ = ["Session"]

logger = logging.getLogger("cable_server.session")


class _Close:
    """Queue marker: close the socket with ``code`` once the frames before it are sent."""

    __slots__ = ("code",)

    def __init__(self, code: int) -> None:
        self.code = code


_NORMAL: Final = _Close(1000)
_INTERNAL_ERROR: Final = _Close(1011)


class _FrameQueue:
    """Frames through ASGI ``send`` in order, by one task (when the server has no direct writer)."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._frames: collections.deque[str | _Close] = collections.deque()
        self._queued = 0  # characters waiting
        self._wakeup = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    def put(self, frame: str | _Close) -> int:
        """Queue ``frame`` (or the close); returns the characters now waiting."""
        self._frames.append(frame)
        if isinstance(frame, str):
            self._queued += len(frame)
        self._wakeup.set()
        return self._queued

    def __len__(self) -> int:
        return len(self._frames)

    def discard(self) -> None:
        """Forget every frame not yet sent."""
        self._frames.clear()
        self._queued = 0

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._frames:
                item = self._frames.popleft()
                if isinstance(item, _Close):
                    await _send_close(self._send, item)
                    return
                self._queued -= len(item)
                await self._send({"type": "websocket.send", "text": item})


async def _send_close(send: Send, marker: _Close) -> None:
    await send({"type": "websocket.close", "code": marker.code, "reason": ""})


class Session:
    """One accepted WebSocket: reads commands in order, writes frames in order, bounded."""

    def __init__(
        self, server: CableServer, websocket: WebSocket, receive: Receive, send: Send, *, extended: bool = False
    ) -> None:
        self.server = server
        self.websocket = websocket
        self._receive = receive
        self._send = send
        #: ``extended``: AnyCable's actioncable-v1-ext-json was negotiated.
        self.protocol = ServerProtocol(extended=extended)
        #: The extended protocol's session id, which a reconnecting client sends back as ``?sid=``:
        #: a bearer secret (see :attr:`log_id` for what logs show).
        self.sid = secrets.token_urlsafe(12)
        #: ``time.time()`` when the upgrade request was accepted (Rails' ``started_at``).
        self.started_at = time.time()
        self.connection: Connection = server.connection_class(self)
        self.subscriptions = Subscriptions(self)
        direct = websocket.scope.get("extensions", {}).get(DIRECT_WRITE)
        self._direct: DirectWriter | None = direct["writer"] if direct else None
        self._queue: _FrameQueue | None = None  # without direct writes; made when the session runs
        self._closer: asyncio.Future[None] | None = None  # the ASGI close, with direct writes
        self._closing = False
        self._task: asyncio.Task[Any] | None = None  # the ASGI task running this session
        self._give_up: asyncio.TimerHandle | None = None  # abandons a close the client never completes
        self._abandoned = False
        self._internal: tuple[str, Listener] | None = None
        #: ``time.monotonic()`` of the ``connect`` this session's identity comes from (a restored
        #: session keeps its predecessor's: recovery never renews an authentication).
        self._authenticated_at = 0.0
        client = websocket.client
        self.peer = f"{client.host}:{client.port}" if client else "?"
        self._metrics = server.metrics  # plain ints, counted as frames go (see cable_server.metrics)
        settings = server.settings
        self._limiter = (
            CommandLimiter(
                settings.command_rate,
                settings.command_burst,
                max_dropped=settings.max_dropped_commands,
                max_seconds=settings.max_flood_seconds,
            )
            if settings.command_rate > 0
            else None
        )

    @functools.cached_property
    def log_id(self) -> str:
        """The ``connection_id`` of log records: a hash of :attr:`sid`, which a log reader cannot
        use to restore the session."""
        return hashlib.blake2b(self.sid.encode(), digest_size=8).hexdigest()

    # --- output ---------------------------------------------------------------------------

    def send(self, frame: str) -> None:
        """Send a frame after every frame sent before it; never waits."""
        if self._closing:
            self._metrics.frames_dropped += 1
            return
        self._metrics.frames_sent += 1
        waiting = self._put(frame)
        if waiting > self.server.settings.max_send_buffer:
            self._too_slow(waiting)

    def _too_slow(self, waiting: int) -> None:
        """Disconnect a client that stopped reading: frames not yet sent are dropped, the
        ``too_slow`` frame and the close follow whatever the socket already holds."""
        logger.warning(
            "%s: %d bytes unsent, client too slow: disconnecting", self.peer, waiting, extra=logs.connection_fields(self)
        )
        self._metrics.slow_disconnects += 1
        if self._queue is not None:
            self._metrics.frames_dropped += len(self._queue)
            self._queue.discard()
        self._put(disconnect_frame(DisconnectReason.TOO_SLOW, reconnect=True))
        self._close(_NORMAL)

    def _put(self, frame: str) -> int:
        """Hand ``frame`` to the socket (direct) or the writer task; returns what now waits."""
        if self._queue is not None:
            return self._queue.put(frame)
        assert self._direct is not None
        return self._direct.write_text(frame)

    def disconnect(self, reason: DisconnectReason | None, *, reconnect: bool) -> None:
        """Queue a disconnect frame, then close the socket with 1000 (Rails' ``close``)."""
        self.send(disconnect_frame(reason, reconnect=reconnect))
        self._close(_NORMAL)

    def _close(self, marker: _Close) -> None:
        if not self._closing:
            self._closing = True
            self.protocol.close()
            if self._queue is not None:
                self._queue.put(marker)
            else:  # direct writes: only the close goes through ASGI
                self._closer = asyncio.ensure_future(_send_close(self._send, marker))
            if self._task is not None:
                self._give_up = asyncio.get_running_loop().call_later(self.server.settings.close_timeout, self._abandon)

    def _abandon(self) -> None:
        """The client did not complete the close in ``close_timeout`` (it stopped reading, so the
        close frame is stuck behind unsent data and uvicorn never reports the disconnect): stop
        reading for it, so that its subscriptions and this session are freed now. What the
        transport still holds goes when the kernel gives up on the peer (``dead_peer_timeout``)."""
        if self._task is not None and not self._task.done():
            self._abandoned = True
            self._task.cancel()

    # --- lifecycle ------------------------------------------------------------------------

    async def run(self) -> None:
        """Serve the accepted socket until it closes."""
        logs.bind_connection(self)
        self._task = asyncio.current_task()
        if self._direct is None:
            self._queue = _FrameQueue(self._send)
        try:
            if await self._open():
                await self._read()
        except OSError as exc:  # the peer vanished mid-write
            logger.debug("%s: connection lost: %s", self.peer, exc)
        except asyncio.CancelledError:
            if not self._abandoned:
                raise
            if self._task is not None:
                self._task.uncancel()
            logger.info("%s: the client did not complete the close: abandoned", self.peer)
        finally:
            if self._give_up is not None:
                self._give_up.cancel()
            await self._cleanup()
            writer = self._queue.task if self._queue is not None else self._closer
            if writer is not None:
                if not writer.done():
                    if self._closing and not self._abandoned:  # let queued frames and the close go out
                        await asyncio.wait([writer], timeout=self.server.settings.close_timeout)
                    writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)

    async def _open(self) -> bool:
        restored = self._recover() if self.protocol.extended else None
        try:
            if restored is None:
                await self.connection.connect()
                self._authenticated_at = time.monotonic()
        except UnauthorizedError:
            logger.info("%s: connection rejected (unauthorized)", self.peer)
            self.send(self.protocol.reject())
            self._close(_NORMAL)
            return False
        except Exception:
            # Rails leaves such a socket open forever with no welcome and no pings; we close it
            # (1011) so the client reconnects instead of hanging.
            logger.exception("%s: Connection.connect raised; closing with 1011", self.peer)
            self.server.metrics.errors["application"] += 1
            self._close(_INTERNAL_ERROR)
            return False
        restored_ids = restored.subscriptions if restored else None
        welcome, buffered = self.protocol.accept(sid=self.sid, restored_ids=restored_ids)
        self.server.sessions.add(self)  # from now on a restart reaches it
        identifier = self.connection.connection_identifier
        if identifier:
            # Live before the welcome: a remote disconnect made once the client is in always lands.
            stream = self.server.internal_channel(identifier)
            listener = Listener(self._on_internal_message)
            self._internal = (stream, listener)
            try:
                await self.server.router.add(stream, listener)
            except PubSubError as exc:
                logger.error("%s: cannot listen for remote disconnects (%s); closing with 1011", self.peer, exc)
                self._internal = None
                self._close(_INTERNAL_ERROR)
                return False
        self.send(welcome)
        logger.info("%s: %s %s", self.peer, "restored" if restored else "connected", logs.clip(identifier or "(anonymous)"))
        for subscription in restored.subscriptions if restored else ():
            await self._execute(Subscribe(subscription, parse_identifier(subscription)), confirm=False)
        for event in buffered:
            if self._admit():
                await self._execute(event)
        return True

    async def _read(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is not None:
                events = self.protocol.receive_text(text)
            else:
                events = self.protocol.receive_bytes(message.get("bytes") or b"")
            for event in events:
                if self._admit():
                    await self._execute(event)

    async def _execute(self, event: Event, *, confirm: bool = True) -> None:
        """Run one command; no error escapes, none is answered (as in Rails)."""
        try:
            if isinstance(event, ProtocolError):
                raise event
            if isinstance(event, Subscribe):
                await self.subscriptions.add(event, confirm=confirm)
                if event.history is not None and event.identifier in self.subscriptions:
                    self.subscriptions.history(History(event.identifier, event.history))
            elif isinstance(event, Unsubscribe):
                await self.subscriptions.remove(event)
            elif isinstance(event, Perform):
                await self.subscriptions.perform(event)
            elif isinstance(event, History):
                self.subscriptions.history(event)
            elif isinstance(event, Ping):
                self.send(PONG_FRAME)
            elif isinstance(event, Pong):
                pass
            else:
                typing.assert_never(event)
        except LimitExceeded as exc:
            self._limit_hit(LimitKind(exc.kind), "refused command: %s", exc)
        except CableError as exc:
            self.server.metrics.errors[error_category(exc)] += 1
            logger.warning("%s: ignored command: %s: %s", self.peer, type(exc).__name__, logs.clip(exc))
        except Exception as exc:
            self.server.metrics.errors[error_category(exc)] += 1
            logger.exception("%s: command failed: %s", self.peer, logs.clip(repr(event)))

    def _admit(self) -> bool:
        """Take the next command under the rate limit (see :mod:`cable_server.limits`); ``False``: drop it."""
        if self._limiter is None:
            return True
        admission = self._limiter.admit()
        if admission is Admission.RUN:
            return True
        if admission is Admission.DROP_FIRST:
            settings = self.server.settings
            self._limit_hit(
                LimitKind.COMMAND_RATE,
                "over %g commands/s (burst %d): dropping commands",
                settings.command_rate,
                settings.command_burst,
            )
        elif admission is Admission.DISCONNECT and not self._closing:
            # Rails has no reason for this; invalid_request is in its list (every client knows it),
            # and reconnect true lets a buggy page recover: @rails/actioncable reconnects only once
            # its connection monitor finds the socket stale (seconds later), so a loop stays slow.
            self._limit_hit(
                LimitKind.COMMAND_FLOOD,
                "still over the command rate after %d dropped commands: disconnecting (invalid_request)",
                self._limiter.dropped,
            )
            self.disconnect(DisconnectReason.INVALID_REQUEST, reconnect=True)
        return False

    def _limit_hit(self, kind: LimitKind, message: str, *args: object) -> None:
        """Count a limit hit and log it once, naming the peer and the connection's identifiers."""
        self.server.metrics.limit_hit(kind)
        fields = logs.connection_fields(self)
        who = self.connection.connection_identifier or "anonymous"
        clipped = [arg if isinstance(arg, int | float) else logs.clip(arg) for arg in args]
        logger.warning("%s (%s): " + message, self.peer, logs.clip(who), *clipped, extra={**fields, "limit": kind.value})

    def _on_internal_message(self, payload: str) -> None:
        """``action_cable/<connection identifier>`` messages: remote disconnect."""
        try:
            message: Any = encoding.loads(payload)
        except encoding.DecodeError:
            logger.error("%s: invalid internal message %s", self.peer, logs.clip(repr(payload)))
            return
        if isinstance(message, dict) and message.get("type") == "disconnect":
            reconnect = message.get("reconnect", True)
            logger.info("%s: removing connection (remote disconnect)", self.peer)
            self.disconnect(DisconnectReason.REMOTE, reconnect=reconnect is not False)
        else:
            logger.error("%s: unknown internal message %s", self.peer, logs.clip(repr(payload)))

    def _recover(self) -> Snapshot | None:
        """AnyCable session recovery: the identity of the connection ``?sid=`` names, if kept."""
        sid = self.websocket.query_params.get("sid") or self.websocket.headers.get("x-anycable-restore-sid")
        snapshot = self.server.recoverable.take(sid)
        if snapshot is not None:
            for name, value in snapshot.identifiers.items():
                setattr(self.connection, name, value)
            self.connection.expires_at = snapshot.expires_at
            self._authenticated_at = snapshot.authenticated_at
        return snapshot

    async def _cleanup(self) -> None:
        if self.protocol.extended and self.protocol.state is State.OPEN and not self._closing:
            connection = self.connection
            snapshot = Snapshot(
                connection.identifiers,
                self.subscriptions.snapshot(),
                identity=connection.connection_identifier,
                authenticated_at=self._authenticated_at,
                expires_at=connection.expires_at,
            )
            await self.server.recoverable.save(self.sid, snapshot)  # before our remote-disconnect listener goes
        self.server.sessions.discard(self)
        if self.protocol.state is not State.CLOSED:
            self.protocol.close()
        await self.subscriptions.unsubscribe_all()
        if self._internal is not None:
            self.server.router.remove(*self._internal)
        try:
            await self.connection.disconnect()
        except Exception:
            logger.exception("%s: Connection.disconnect raised", self.peer)
        logger.info("%s: disconnected", self.peer)
