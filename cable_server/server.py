"""``CableServer``: channels, live connections, heartbeat, broadcasting, and the ASGI app.

A ``CableServer`` is itself an ASGI application: it serves the cable at ``settings.path``
(and below it, like a Rack mount), handles the lifespan (pub/sub and the heartbeat), and
passes every other request to ``app`` (a Starlette app, say), or answers 404.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from . import encoding, health, logs
from .channel import Channel
from .config import Settings
from .connection import Connection, ConnectionStatistics
from .handshake import origin_allowed
from .http_broadcast import BroadcastEndpoint
from .limits import LimitKind, address_key
from .metrics import Metrics
from .naming import connection_identifier, top_level_name
from .protocol import PROTOCOL_V1_EXT_JSON, DisconnectReason, ping_frame, select_subprotocol
from .pubsub import MemoryBackend, PubSubBackend
from .refusals import deny
from .restore import SessionCache
from .session import Session
from .streams import StreamRouter

__all__ = ["CableServer", "RemoteConnection", "RemoteConnections"]

logger = logging.getLogger("cable_server")

C = TypeVar("C", bound=type[Channel])

_NOT_FOUND = PlainTextResponse("Page not found", status_code=404)
_TOO_MANY = PlainTextResponse("Too many connections from this address", status_code=429)


class CableServer:
    """An ActionCable server: register channels, then serve it with ``cable-server module:obj``."""

    def __init__(
        self,
        *,
        connection_class: type[Connection] = Connection,
        channels: Iterable[type[Channel]] = (),
        settings: Settings | None = None,
        pubsub: PubSubBackend | None = None,
        app: ASGIApp | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.connection_class = connection_class
        self.channels: dict[str, type[Channel]] = {}
        self.router = StreamRouter(pubsub or MemoryBackend())
        #: The sessions of the open, welcomed connections: internal bookkeeping, which the server
        #: changes as connections come and go (:meth:`open_connections_statistics` is the public view).
        self.sessions: set[Session] = set()
        self.remote_connections = RemoteConnections(self)
        #: Closed extended-protocol sessions a client may recover with ``?sid=``.
        self.recoverable = SessionCache(self)
        self.app = app
        #: Services attached to this server by name (the chat service, say), like Flask's.
        self.extensions: dict[str, Any] = {}
        self._stop_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._drain_callbacks: list[Callable[[], Awaitable[None]]] = []
        self._heartbeat: asyncio.Task[None] | None = None
        #: Counters and histograms of this server, served at ``settings.metrics_path``.
        self.metrics = Metrics(self)
        #: Set by :meth:`drain`: clients were told to go, readiness says 503.
        self.draining = False
        self._connections_by_address: collections.Counter[str] = collections.Counter()
        for channel_class in channels:
            self.register(channel_class)

    def register(self, channel_class: C) -> C:
        """Make a channel subscribable by its ``identifier_name``; usable as a class decorator."""
        self.channels[channel_class.identifier_name] = channel_class
        channel_class._server = self
        return channel_class

    def channel_for(self, name: str) -> type[Channel] | None:
        """The registered channel a subscribe's ``channel`` names, or ``None``. As in Rails, the
        name may be a constant path from the top level (``::EchoChannel``, ``Object::EchoChannel``);
        nothing but a registered channel is ever found."""
        return self.channels.get(top_level_name(name))

    def set_pubsub(self, backend: PubSubBackend) -> None:
        """Replace the pub/sub backend (before the server starts)."""
        if self._heartbeat is not None:
            raise RuntimeError("the pub/sub backend cannot change while the server runs")
        self.router.backend = backend

    def on_drain(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback()`` when the server starts to drain, before clients are told to go
        (at most ``shutdown_timeout``): what they should still receive is sent then."""
        self._drain_callbacks.append(callback)

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Await ``callback()`` when the server stops, after clients were told and left."""
        self._stop_callbacks.append(callback)

    def open_connections_statistics(self) -> list[ConnectionStatistics]:
        """Rails' ``ActionCable.server.open_connections_statistics``: every open connection of
        this process that was welcomed (a connection still in ``connect`` is not listed yet), by
        start time."""
        return sorted((session.connection.statistics for session in self.sessions), key=lambda stats: stats.started_at)

    # --- broadcasting ---------------------------------------------------------------------

    async def broadcast(self, broadcasting: str, message: Any) -> None:
        """Send ``message`` to every subscription streaming ``broadcasting``, in every process.

        The message is encoded once (ActiveSupport JSON); a ``str`` arrives as a JSON string.
        """
        await self.router.backend.broadcast(broadcasting, encoding.dumps(message))

    @staticmethod
    def internal_channel(identifier: str) -> str:
        """The broadcasting that reaches one identified connection (remote disconnect)."""
        return f"action_cable/{identifier}"

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Started and not yet stopped."""
        return self._heartbeat is not None

    async def start(self) -> None:
        """Start the pub/sub and the heartbeat (the ASGI lifespan does it when served)."""
        await self.router.start()
        self.draining = False
        self._heartbeat = asyncio.ensure_future(self._beat())

    async def stop(self) -> None:
        """Say ``server_restart`` to every client, wait briefly for them to close, then stop."""
        await self.drain()
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
            self._heartbeat = None
        for callback in reversed(self._stop_callbacks):
            try:
                await callback()
            except Exception:
                logger.exception("a stop callback failed")
        await self.router.stop()

    def restart(self) -> None:
        """Rails' ``ActionCable.server.restart``: disconnect everyone with ``server_restart``;
        clients reconnect and resubscribe."""
        for session in tuple(self.sessions):
            session.disconnect(DisconnectReason.SERVER_RESTART, reconnect=True)

    async def drain(self) -> None:
        """:meth:`restart`, then wait up to ``shutdown_timeout`` for the sockets to close."""
        if not self.draining:
            self.draining = True
            await self._before_drain()
        if not self.sessions:
            return
        logger.info("telling %d client(s) the server restarts", len(self.sessions))
        self.restart()
        deadline = time.monotonic() + self.settings.shutdown_timeout
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def _before_drain(self) -> None:
        try:
            async with asyncio.timeout(self.settings.shutdown_timeout):
                for callback in self._drain_callbacks:
                    await callback()
        except TimeoutError:
            logger.warning("drain callbacks took longer than shutdown_timeout (%ss)", self.settings.shutdown_timeout)
        except Exception:
            logger.exception("a drain callback failed")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """Start and stop the server; pass to ``Starlette(lifespan=...)`` when embedding."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def _beat(self) -> None:
        """One ping frame per tick, shared by every open connection; ticks keep their period
        however long a pass over many thousands of connections takes."""
        loop = asyncio.get_running_loop()
        tick = loop.time()
        while True:
            tick = max(tick + self.settings.ping_interval, loop.time())
            await asyncio.sleep(tick - loop.time())
            self._ping_all(ping_frame(int(time.time())))
            self.router.expire_backlog()
            self.recoverable.expire()

    def _ping_all(self, frame: str) -> None:
        # A function of its own: the loop variable must not keep the last session alive until
        # the next tick, as a local of ``_beat`` did (found by the soak test).
        for session in tuple(self.sessions):
            session.send(frame)

    # --- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path: str = scope.get("path", "")
        if scope["type"] == "http" and await self._serve_own_http(path, scope, receive, send):
            return
        mount = self.settings.path.rstrip("/")
        if path == mount or path.startswith(mount + "/"):
            await self.endpoint(scope, receive, send)
        elif self.app is not None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await PlainTextResponse("Not Found", status_code=404)(scope, receive, send)
        else:
            await WebSocket(scope, receive, send).close()

    async def _serve_own_http(self, path: str, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer the HTTP paths the server serves itself (broadcast, health, metrics)."""
        settings = self.settings
        if settings.broadcast_secret and path == settings.broadcast_path:
            await BroadcastEndpoint(self, settings.broadcast_secret)(scope, receive, send)
        elif path == settings.health_path:
            await health.live(scope, receive, send)
        elif path == settings.ready_path:
            await health.ready(self, scope, receive, send)
        elif path == settings.metrics_path and settings.metrics_secret:
            await self.metrics.endpoint(settings.metrics_secret, scope, receive, send)
        else:
            return False
        return True

    async def endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The cable itself, for mounting in another app (``Mount("/cable", server.endpoint)``).

        At most ``max_connections_per_address`` sockets per client address: one more is refused
        before the upgrade with HTTP 429, which a browser reports as a failed connection that
        ``@rails/actioncable`` retries with its backoff. (The ``unauthorized`` disconnect frame
        would need an accepted socket and would tell the client never to reconnect.)
        """
        client = scope.get("client")
        address = address_key(client[0]) if client else "?"
        if scope["type"] != "websocket":
            method, path = scope.get("method"), logs.clip(repr(scope.get("path")))
            logger.info("refused %s %s from %s: not a WebSocket upgrade (404)", method, path, address)
            await deny(scope, receive, send, _NOT_FOUND)
            return
        if self._connections_by_address[address] >= self.settings.max_connections_per_address:
            self.metrics.limit_hit(LimitKind.CONNECTIONS_PER_ADDRESS)
            logger.warning(
                "refused a connection from %s: %d open from this address (max_connections_per_address)",
                address,
                self._connections_by_address[address],
                extra={"peer": address, "limit": LimitKind.CONNECTIONS_PER_ADDRESS.value},
            )
            await deny(scope, receive, send, _TOO_MANY)
            return
        self._connections_by_address[address] += 1
        try:
            await self._serve_socket(scope, receive, send, address)
        finally:
            self._connections_by_address[address] -= 1
            if not self._connections_by_address[address]:
                del self._connections_by_address[address]

    async def _serve_socket(self, scope: Scope, receive: Receive, send: Send, address: str) -> None:
        websocket = WebSocket(scope, receive, send)
        if not origin_allowed(self.settings, websocket.headers, scope.get("scheme", "ws")):
            logger.info(
                "refused origin %s (host %s) from %s (404)",
                logs.clip(repr(websocket.headers.get("origin"))),
                logs.clip(repr(websocket.headers.get("host"))),
                address,
            )
            await deny(scope, receive, send, _NOT_FOUND)
            return
        subprotocol = select_subprotocol(scope.get("subprotocols", []))
        await websocket.accept(subprotocol=subprotocol)
        await Session(self, websocket, receive, send, extended=subprotocol == PROTOCOL_V1_EXT_JSON).run()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    logger.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


class RemoteConnections:
    """``server.remote_connections.where(current_user=user).disconnect()``, as in Rails."""

    def __init__(self, server: CableServer) -> None:
        self._server = server

    def where(self, **identifiers: Any) -> RemoteConnection:
        """The connections identified by these values (every one of ``identified_by`` you name)."""
        unknown = set(identifiers) - set(self._server.connection_class.identified_by)
        if unknown or not identifiers:
            raise ValueError(f"not identifiers of {self._server.connection_class.__name__}: {sorted(unknown)}")
        return RemoteConnection(self._server, identifiers)


class RemoteConnection:
    """The connections of some identifiers, in any process; see :meth:`disconnect`."""

    def __init__(self, server: CableServer, identifiers: dict[str, Any]) -> None:
        self._server = server
        self.identifiers = identifiers

    async def disconnect(self, *, reconnect: bool = True) -> None:
        """Close the matching connections, in any process; they get a ``remote`` disconnect."""
        stream = self._server.internal_channel(connection_identifier(self.identifiers.values()))
        await self._server.broadcast(stream, {"type": "disconnect", "reconnect": reconnect})
