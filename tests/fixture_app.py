"""The application the tests serve: one channel per behaviour worth pinning.

Its ``Connection`` reads the user from the ``user`` query param or cookie:
``reject`` refuses the connection, ``raise`` makes ``connect`` fail, ``slow`` takes a second.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

from cable_server import CableServer, Channel, Connection, Settings, rescue_from


class FixtureConnection(Connection):
    identified_by = ("current_user",)

    async def connect(self) -> None:
        user = self.request.query_params.get("user") or self.request.cookies.get("user")
        if user == "reject":
            self.reject_unauthorized_connection()
        if user == "raise":
            raise RuntimeError("connect failed on purpose")
        if user == "slow":
            await asyncio.sleep(1)
        self.current_user = user

    async def disconnect(self) -> None:
        server = self.server
        if self.current_user:
            await server.broadcast("disconnects", {"disconnected": self.current_user})


class HandledError(Exception):
    pass


class EchoChannel(Channel):
    """Streams ``echo_<room>``; actions echo, transmit and broadcast."""

    def subscribed(self) -> None:
        room = self.params.get("room")
        if room is not None:
            self.stream_from(f"echo_{room}")

    def echo(self, data: dict[str, Any]) -> None:
        self.transmit(data)

    def receive(self, data: dict[str, Any]) -> None:
        self.transmit({"received": data})

    def ping_user(self) -> None:
        self.transmit({"user": self.current_user})

    def pid(self) -> None:
        """Which process serves this connection (``--workers`` tests)."""
        self.transmit({"pid": os.getpid()})

    async def shout(self, data: dict[str, Any]) -> None:
        await self.server.broadcast(f"echo_{self.params.get('room')}", data.get("payload"))

    def transmit_variants(self) -> None:
        for value in ("just a string", [1, "two", {"three": 3}], 42, None, True, 2.5):
            self.transmit(value)

    async def slow(self, data: dict[str, Any]) -> None:
        await asyncio.sleep(float(data.get("seconds", 0.3)))
        self.transmit({"slow": "done"})

    def fast(self) -> None:
        self.transmit({"fast": "done"})

    def boom(self) -> None:
        raise RuntimeError("boom")

    def boom_handled(self) -> None:
        raise HandledError("handled boom")

    def follow(self, data: dict[str, Any]) -> None:
        self.stream_from(str(data["stream"]))

    def unfollow(self, data: dict[str, Any]) -> None:
        self.stop_stream_from(str(data["stream"]))

    def unfollow_all(self) -> None:
        self.stop_all_streams()

    @rescue_from(HandledError)
    def report(self, error: HandledError) -> None:
        self.transmit({"error": str(error)})

    def _private(self) -> None:
        self.transmit({"private": "called"})


class MultiStreamChannel(Channel):
    """Streams from ``a`` and ``b``."""

    def subscribed(self) -> None:
        self.stream_from("a")
        self.stream_from("b")


class RejectChannel(Channel):
    def subscribed(self) -> None:
        self.reject()


class StreamThenRejectChannel(Channel):
    def subscribed(self) -> None:
        self.stream_from("rejected_stream")
        self.reject()


class TransmitInSubscribedChannel(Channel):
    def subscribed(self) -> None:
        self.transmit({"hello": "from subscribed"})
        self.transmit("world")
        self.stream_from("deferred")


class RaiseInSubscribedChannel(Channel):
    def subscribed(self) -> None:
        raise RuntimeError("subscribed failed on purpose")

    def echo(self, data: dict[str, Any]) -> None:
        self.transmit(data)


@dataclass
class Room:
    id: int

    def to_gid_param(self) -> str:
        return f"room-{self.id}"


class RoomChannel(Channel):
    """``stream_for`` a model; rejects when there is no room."""

    def subscribed(self) -> None:
        if self.params.get("id") is None:
            self.reject()
            return
        self.stream_for(Room(int(self.params["id"])))


class TickChannel(Channel):
    """Transmits ``{"tick": n}`` every ``every`` seconds."""

    def subscribed(self) -> None:
        self.count = 0
        self.periodically(self.tick, every=float(self.params.get("every", 0.2)))

    def tick(self) -> None:
        self.count += 1
        self.transmit({"tick": self.count})


class InterceptChannel(Channel):
    """``stream_from`` with callbacks: decoded (``wrapped``) and raw."""

    def subscribed(self) -> None:
        self.stream_from("intercept", lambda message: self.transmit({"wrapped": message}))
        self.stream_from("intercept_raw", lambda raw: self.transmit({"raw": raw}), raw=True)


class PresenceChannel(Channel):
    """Broadcasts ``user left`` to ``presence`` when a subscription ends."""

    def subscribed(self) -> None:
        self.stream_from("presence")

    async def unsubscribed(self) -> None:
        await self.server.broadcast("presence", {"left": self.current_user, "id": self.params.get("id")})


CHANNELS: list[type[Channel]] = [
    EchoChannel,
    MultiStreamChannel,
    RejectChannel,
    StreamThenRejectChannel,
    TransmitInSubscribedChannel,
    RaiseInSubscribedChannel,
    RoomChannel,
    TickChannel,
    InterceptChannel,
    PresenceChannel,
]


def create_app(settings: Settings | None = None) -> CableServer:
    return CableServer(
        connection_class=FixtureConnection,
        channels=CHANNELS,
        settings=settings or Settings(ping_interval=0.5, shutdown_timeout=1.0),
    )
