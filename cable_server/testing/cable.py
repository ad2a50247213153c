"""Testing connections and channels without a socket or a server, like Rails' ``ActionCable::Channel::TestCase``.

:class:`CableTester` drives a :class:`~cable_server.CableServer` in process, through the same
ASGI calls uvicorn makes (so every layer runs: handshake, protocol, session, channel), and
records every broadcast::

    async def test_speak_is_broadcast_to_the_room() -> None:
        async with CableTester(cable) as tester:
            alice = await tester.connect(query="user=alice")
            assert alice.connected and alice.connection.current_user == "alice"
            room = await alice.subscribe(ChatChannel, room="lobby")
            assert room.confirmed and room.streams == ["chat_lobby"]
            async with tester.assert_broadcasts("chat_lobby", 1):
                await room.perform("speak", text="hi")
            tester.assert_broadcast_on("chat_lobby", {"user": "alice", "text": "hi"})
            assert await room.next_message() == {"user": "alice", "text": "hi"}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, MutableMapping
from http.cookies import SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from .. import encoding
from ..channel import Channel
from ..connection import Connection
from ..pubsub import MessageHandler, PubSubBackend

if TYPE_CHECKING:
    from ..server import CableServer
    from ..session import Session

__all__ = ["CableTester", "TestClient", "TestSubscription"]


class _Recording(PubSubBackend):
    """Wraps the server's backend and notes every broadcast (decoded), in order."""

    def __init__(self, inner: PubSubBackend) -> None:
        self.inner = inner
        self.broadcasts: list[tuple[str, Any]] = []

    async def start(self, on_message: MessageHandler) -> None:
        await self.inner.start(on_message)

    async def stop(self) -> None:
        await self.inner.stop()

    async def subscribe(self, channel: str) -> None:
        await self.inner.subscribe(channel)

    async def unsubscribe(self, channel: str) -> None:
        await self.inner.unsubscribe(channel)

    async def broadcast(self, channel: str, payload: str) -> None:
        self.broadcasts.append((channel, encoding.loads(payload)))
        await self.inner.broadcast(channel, payload)


def _stubbable(connection_class: type[Connection]) -> type[Connection]:
    """The app's Connection, except that a test may hand it its identifiers (``stub_connection``)."""

    class Stubbable(connection_class):  # type: ignore[valid-type,misc]
        async def connect(self) -> None:
            stubbed = self.request.scope["state"].get("cable_test_identifiers")
            if stubbed is None:
                await super().connect()
                return
            for name, value in stubbed.items():
                if name not in self.identified_by:
                    raise ValueError(f"{name!r} is not in {connection_class.__name__}.identified_by")
                setattr(self, name, value)

    Stubbable.__name__ = Stubbable.__qualname__ = connection_class.__name__
    return Stubbable


class CableTester:
    """``async with CableTester(cable) as tester``: the server started in process, broadcasts recorded."""

    def __init__(self, server: CableServer, *, origin: str = "http://testserver") -> None:
        self.server = server
        self.origin = origin
        self._recording = _Recording(server.router.backend)
        self._clients: list[TestClient] = []

    async def __aenter__(self) -> CableTester:
        self.server.set_pubsub(self._recording)
        self._connection_class = self.server.connection_class
        self.server.connection_class = _stubbable(self._connection_class)
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._clients:
            await client.close()
        await self.server.stop()
        self.server.set_pubsub(self._recording.inner)
        self.server.connection_class = self._connection_class

    async def connect(
        self,
        *,
        query: str | dict[str, str] = "",
        cookies: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        subprotocols: tuple[str, ...] = ("actioncable-v1-json", "actioncable-unsupported"),
        identifiers: dict[str, Any] | None = None,
    ) -> TestClient:
        """Open a connection; ``connected`` or ``rejected`` says how ``Connection.connect`` answered.

        ``identifiers`` (Rails' ``stub_connection``): skip ``connect`` and identify the
        connection with these values instead.
        """
        client = TestClient(self, query, cookies or {}, headers or {}, subprotocols)
        if identifiers is not None:
            client.scope["state"]["cable_test_identifiers"] = identifiers
        self._clients.append(client)
        await client._open()
        return client

    # --- broadcasts -----------------------------------------------------------------------

    def broadcasts(self, stream: str) -> list[Any]:
        """Every message broadcast to ``stream`` so far, decoded, in order."""
        return [message for name, message in self._recording.broadcasts if name == stream]

    @contextlib.asynccontextmanager
    async def capture_broadcasts(self, stream: str) -> AsyncIterator[list[Any]]:
        """The messages broadcast to ``stream`` inside the block (the list fills as they come)."""
        captured: list[Any] = []
        start = len(self._recording.broadcasts)
        try:
            yield captured
        finally:
            captured.extend(m for name, m in self._recording.broadcasts[start:] if name == stream)

    @contextlib.asynccontextmanager
    async def assert_broadcasts(self, stream: str, count: int) -> AsyncIterator[None]:
        """Assert that the block broadcasts exactly ``count`` messages to ``stream``."""
        async with self.capture_broadcasts(stream) as captured:
            yield
        assert len(captured) == count, f"{len(captured)} broadcast(s) to {stream!r}, expected {count}: {captured}"

    def assert_broadcast_on(self, stream: str, message: Any) -> None:
        """Assert that ``message`` (compared as JSON) was broadcast to ``stream``."""
        expected = encoding.loads(encoding.dumps(message))
        sent = self.broadcasts(stream)
        assert expected in sent, f"{message!r} was not broadcast to {stream!r}; it got {sent}"


class TestClient:
    """One connection, driven through ASGI messages; frames arrive decoded in :attr:`frames`."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        tester: CableTester,
        query: str | dict[str, str],
        cookies: dict[str, str],
        headers: dict[str, str],
        subprotocols: tuple[str, ...],
    ) -> None:
        self.tester = tester
        query_string = urlencode(query) if isinstance(query, dict) else query.lstrip("?")
        raw_headers = [(b"host", b"testserver"), (b"origin", tester.origin.encode())]
        raw_headers += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        if cookies:
            jar = SimpleCookie()
            for name, value in cookies.items():
                jar[name] = value
            raw_headers.append((b"cookie", "; ".join(f"{k}={m.coded_value}" for k, m in jar.items()).encode()))
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "http_version": "1.1",
            "path": tester.server.settings.path,
            "raw_path": tester.server.settings.path.encode(),
            "query_string": query_string.encode(),
            "root_path": "",
            "headers": raw_headers,
            "client": ("127.0.0.1", 50000 + len(tester._clients)),
            "server": ("testserver", 80),
            "subprotocols": list(subprotocols),
            "extensions": {"websocket.http.response": {}},
            "state": {},
        }
        self._incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._idle = asyncio.Event()
        self._outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.accepted = False
        self.closed = False
        #: The first frame: the welcome, or the unauthorized disconnect.
        self.welcome: Any = None
        #: Frames the server sent, decoded, pings left out.
        self.frames: list[Any] = []

    # --- ASGI side ------------------------------------------------------------------------

    async def _receive(self) -> dict[str, Any]:
        # The session asks for the next message only once it has run the previous one.
        self._idle.set()
        message = await self._incoming.get()
        self._idle.clear()
        return message

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        await self._outgoing.put(dict(message))

    async def _open(self) -> None:
        self._incoming.put_nowait({"type": "websocket.connect"})
        self._task = asyncio.ensure_future(self.tester.server(self.scope, self._receive, self._send))
        first = await self._next_event()
        self.accepted = first["type"] == "websocket.accept"
        if self.accepted:
            self.welcome = await self.receive()

    async def _next_event(self, timeout: float = 2.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            return await self._outgoing.get()

    # --- the client's view ----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Accepted and welcomed (``Connection.connect`` did not refuse it)."""
        return self.accepted and isinstance(self.welcome, dict) and self.welcome.get("type") == "welcome"

    @property
    def rejected(self) -> bool:
        """``reject_unauthorized_connection()``: the client got the unauthorized disconnect."""
        return self.accepted and isinstance(self.welcome, dict) and self.welcome.get("reason") == "unauthorized"

    @property
    def session(self) -> Session:
        """The server-side session of this connection (raises ``LookupError`` once closed)."""
        for session in self.tester.server.sessions:
            if session.websocket.scope is self.scope:
                return session
        raise LookupError("the connection is not open")

    @property
    def connection(self) -> Connection:
        """The server-side ``Connection``: its identifiers are attributes."""
        return self.session.connection

    async def send(self, frame: dict[str, Any]) -> None:
        """Send a command and return once the server has run it (as Rails' test cases do);
        work an action hands to a task (``start_task``) may still be going on."""
        self._idle.clear()
        await self._incoming.put({"type": "websocket.receive", "text": json.dumps(frame)})
        async with asyncio.timeout(5):
            await self._idle.wait()

    async def receive(self, timeout: float = 2.0) -> Any:
        """The next frame the server sent (pings skipped); ``None`` once the socket is closed."""
        while True:
            event = await self._next_event(timeout)
            if event["type"] != "websocket.send":
                self.closed = True
                return None
            frame = json.loads(event["text"])
            if not (isinstance(frame, dict) and frame.get("type") == "ping"):
                self.frames.append(frame)
                return frame

    async def subscribe(self, channel: type[Channel] | str, **params: Any) -> TestSubscription:
        """Subscribe as ``@rails/actioncable`` does and wait for the confirmation or rejection."""
        name = channel if isinstance(channel, str) else channel.identifier_name
        identifier = json.dumps({"channel": name, **params}, separators=(",", ":"))
        subscription = TestSubscription(self, identifier)
        await self.send({"command": "subscribe", "identifier": identifier})
        while True:
            frame = await self.receive()
            if frame is None:
                raise ConnectionError("the server closed the connection")
            if frame.get("identifier") == identifier and frame.get("type") in ("confirm_subscription", "reject_subscription"):
                subscription.confirmed = frame["type"] == "confirm_subscription"
                return subscription
            subscription.transmissions.append(frame.get("message"))

    async def close(self) -> None:
        """Close the connection as a browser would, and wait for the server to clean up."""
        if self._task is not None and not self._task.done():
            await self._incoming.put({"type": "websocket.disconnect", "code": 1000})
            await asyncio.wait([self._task], timeout=2)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class TestSubscription:
    """A subscription seen from both sides: what was transmitted, and the channel instance."""

    __test__ = False

    def __init__(self, client: TestClient, identifier: str) -> None:
        self.client = client
        self.identifier = identifier
        self.confirmed = False
        #: Messages received for this subscription, in order (``transmit`` and broadcasts).
        self.transmissions: list[Any] = []

    @property
    def rejected(self) -> bool:
        """The server answered ``reject_subscription``."""
        return not self.confirmed

    @property
    def channel(self) -> Channel:
        """The server-side channel instance."""
        return self.client.session.subscriptions._channels[self.identifier]

    @property
    def streams(self) -> list[str]:
        """The broadcastings the channel streams from."""
        return self.channel.streams

    async def perform(self, action: str, **data: Any) -> None:
        """Call an action, as ``subscription.perform(action, data)`` does in the browser."""
        await self.client.send(
            {"command": "message", "identifier": self.identifier, "data": json.dumps({**data, "action": action})}
        )

    async def next_message(self, timeout: float = 2.0) -> Any:
        """The next message for this subscription."""
        while True:
            frame = await self.client.receive(timeout)
            if frame is None:
                raise ConnectionError("the server closed the connection")
            if frame.get("identifier") == self.identifier and "message" in frame:
                self.transmissions.append(frame["message"])
                return frame["message"]
