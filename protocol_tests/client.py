"""A raw ActionCable test client: real WebSocket frames, nothing interpreted for you."""

from __future__ import annotations

import asyncio
import json
from ssl import SSLContext
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

DEFAULT_PROTOCOLS = ("actioncable-v1-json", "actioncable-unsupported")


def ident(channel: str, **params: Any) -> str:
    """An identifier as @rails/actioncable builds it: channel first, then params in order."""
    return json.dumps({"channel": channel, **params}, separators=(",", ":"), ensure_ascii=False)


class CableClient:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        origin: str | None,
        subprotocols: tuple[str, ...] | None = DEFAULT_PROTOCOLS,
        headers: dict[str, str] | None = None,
        welcome: bool = True,
        ssl: SSLContext | None = None,
    ) -> CableClient:
        ws = await websockets.connect(
            url,
            origin=origin,  # type: ignore[arg-type]
            subprotocols=list(subprotocols) if subprotocols else None,  # type: ignore[arg-type]
            additional_headers=headers,
            compression=None,
            open_timeout=5,
            max_size=None,
            ssl=ssl,
        )
        client = cls(ws)
        if welcome:
            assert await client.recv_raw() == '{"type":"welcome"}'
        return client

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def subscribe(self, identifier: str, *, confirm: bool = True) -> None:
        await self.send({"command": "subscribe", "identifier": identifier})
        if confirm:
            assert await self.recv() == {"identifier": identifier, "type": "confirm_subscription"}

    async def unsubscribe(self, identifier: str) -> None:
        await self.send({"command": "unsubscribe", "identifier": identifier})

    async def perform(self, identifier: str, action: str | None = None, **data: Any) -> None:
        if action is not None:
            data["action"] = action
        await self.send({"command": "message", "identifier": identifier, "data": json.dumps(data)})

    async def recv_raw(self, timeout: float = 3.0, *, pings: bool = False) -> str:
        """The next text frame, skipping pings unless ``pings``; ``timeout`` bounds the whole wait."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.ws.recv()
                assert isinstance(frame, str), "server sent a binary frame"
                if pings or not frame.startswith('{"type":"ping"'):
                    return frame

    async def recv(self, timeout: float = 3.0, *, pings: bool = False) -> Any:
        return json.loads(await self.recv_raw(timeout, pings=pings))

    async def expect_silence(self, seconds: float = 0.5, *, pings: bool = False) -> None:
        """Assert that no frame arrives for ``seconds`` (pings aside, unless ``pings``)."""
        try:
            frame = await self.recv_raw(seconds, pings=pings)
        except TimeoutError:
            return
        raise AssertionError(f"expected silence, got {frame}")

    async def close(self) -> None:
        await self.ws.close()


async def closed_with(client: CableClient, timeout: float = 3.0) -> int:
    """Wait for the server to close the socket; return the close code it sent."""
    try:
        frame = await asyncio.wait_for(client.ws.recv(), timeout)
    except ConnectionClosed:
        close = client.ws.protocol.close_rcvd
        assert close is not None, "socket dropped without a close frame"
        return close.code
    raise AssertionError(f"expected the server to close the socket, got {frame!r}")


async def assert_usable(client: CableClient) -> None:
    """The connection still answers: a fresh EchoChannel subscription is confirmed."""
    await client.subscribe(ident("EchoChannel", room="still-alive"))
