"""The conformance fixture app on cable-server: the channels of ``README.md``, as Rails has them.

``rails_reference/`` serves the same channels from Rails; the suite runs against either.
Run standalone with ``python -m protocol_tests.fixture --host 127.0.0.1 --port 8001``
(every ``cable-server`` option is accepted).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import cable_server
from cable_server import CableServer, Channel, Connection, Settings, rescue_from
from cable_server.cli import main as cli_main

__all__ = ["create_app"]

ALLOWED_ORIGINS = ("http://localhost:3000", re.compile(r"https?://allowed\.example"))
FAKE_MODEL_CHUNKS = ("Hello", ", ", "world", "!")


class FixtureConnection(Connection):
    identified_by = ("current_user",)

    async def connect(self) -> None:
        user = self.request.query_params.get("user") or self.request.cookies.get("user") or "anonymous"
        if user == "reject":
            self.reject_unauthorized_connection()
        if user == "raise":
            raise RuntimeError("connect raised on purpose")
        if user == "slow":
            await asyncio.sleep(1)
        self.current_user = user


class FixtureError(Exception):
    """The error ``RaiseChannel.boom_handled`` raises and its ``rescue_from`` handler answers."""


class Room:
    """A model-like object: ``stream_for`` names it by its GlobalID param, as Rails does."""

    def __init__(self, room_id: str) -> None:
        self.room_id = room_id

    def to_gid_param(self) -> str:
        gid = f"gid://cable-ref/Room/{self.room_id}".encode()
        return base64.urlsafe_b64encode(gid).decode().rstrip("=")


class EchoChannel(Channel):
    def subscribed(self) -> None:
        self.stream_from(self.stream)

    @property
    def stream(self) -> str:
        return f"echo_{self.params.get('room')}"

    def echo(self, data: dict[str, Any]) -> None:
        self.transmit(data)

    async def broadcast(self, data: dict[str, Any]) -> None:
        await self.server.broadcast(self.stream, data)

    def ping_user(self) -> None:
        self.transmit({"user": self.current_user})

    def receive(self, data: dict[str, Any]) -> None:
        self.transmit({"received": data})

    def params_dump(self) -> None:
        self.transmit(self.params)

    def stop_streaming(self) -> None:
        self.stop_stream_from(self.stream)

    def transmit_string(self) -> None:
        self.transmit("just a string")

    def transmit_array(self) -> None:
        self.transmit([1, "two", {"three": 3}])

    def transmit_number(self) -> None:
        self.transmit(42)

    def transmit_nil(self) -> None:
        self.transmit(None)

    def multi(self, data: dict[str, Any]) -> None:
        for i in range(1, int(data.get("n", 1)) + 1):
            self.transmit({"n": i})

    async def burst(self, data: dict[str, Any]) -> None:
        for i in range(1, int(data.get("n", 1)) + 1):
            await self.server.broadcast(self.stream, {"seq": i})


class RejectChannel(Channel):
    def subscribed(self) -> None:
        if self.params.get("stream"):
            self.stream_from(f"reject_{self.params.get('room')}")
        self.reject()


class StreamForChannel(Channel):
    def subscribed(self) -> None:
        if self.target is None:
            self.reject()
        else:
            self.stream_for(self.target)

    @property
    def target(self) -> Room | str | None:
        if self.params.get("room") is not None:
            return Room(str(self.params["room"]))
        topic = self.params.get("topic")
        return str(topic) if topic is not None else None

    def whoami(self) -> None:
        self.transmit({"broadcasting": self.broadcasting_for(self.target)})

    async def broadcast_model(self, data: dict[str, Any]) -> None:
        await self.broadcast_to(self.target, data)


class RawStreamChannel(Channel):
    def subscribed(self) -> None:
        stream = f"raw_{self.params.get('room')}"
        if self.params.get("coder") == "json":
            self.stream_from(stream, lambda message: self.transmit({"decoded": message}))
        else:
            self.stream_from(stream, lambda message: self.transmit({"raw": message}), raw=True)


class GptChatChannel(Channel):
    """The original Rails GptChatChannel's wire contract, answered by a fixed fake model."""

    def subscribed(self) -> None:
        self.stream_from(f"public_{self.params.get('room')}")

    async def send_message(self, data: dict[str, Any]) -> None:
        for chunk in FAKE_MODEL_CHUNKS:
            await self.server.broadcast(f"public_{data.get('user_id')}", {"content": chunk})


class RaiseChannel(Channel):
    def boom(self) -> None:
        raise RuntimeError("unhandled boom")

    def boom_handled(self) -> None:
        raise FixtureError("handled boom")

    def echo(self, data: dict[str, Any]) -> None:
        self.transmit(data)

    @rescue_from(FixtureError)
    def report(self, error: FixtureError) -> None:
        self.transmit({"error": str(error), "class": type(error).__name__})


class RaiseOnSubscribeChannel(Channel):
    def subscribed(self) -> None:
        raise RuntimeError("subscribed raised on purpose")

    def echo(self, data: dict[str, Any]) -> None:
        self.transmit(data)


class TickerChannel(Channel):
    def subscribed(self) -> None:
        self.ticks = 0
        self.periodically(self.tick, every=0.5)

    def tick(self) -> None:
        self.ticks += 1
        self.transmit({"tick": self.ticks})


class DeferredChannel(Channel):
    def subscribed(self) -> None:
        self.transmit({"hello": "from subscribed"})
        for name in self.streams_names:
            self.stream_from(name)

    @property
    def streams_names(self) -> tuple[str, str]:
        room = self.params.get("room")
        return f"deferred_a_{room}", f"deferred_b_{room}"

    async def broadcast_both(self, data: dict[str, Any]) -> None:
        for name in self.streams_names:
            await self.server.broadcast(name, data)


class PresenceChannel(Channel):
    def subscribed(self) -> None:
        self.stream_from(self.stream)

    async def unsubscribed(self) -> None:
        await self.server.broadcast(self.stream, {"left": self.current_user})

    @property
    def stream(self) -> str:
        return f"presence_{self.params.get('room')}"


CHANNELS: tuple[type[Channel], ...] = (
    EchoChannel,
    RejectChannel,
    StreamForChannel,
    RawStreamChannel,
    GptChatChannel,
    RaiseChannel,
    RaiseOnSubscribeChannel,
    TickerChannel,
    DeferredChannel,
    PresenceChannel,
)


def admin_routes(cable: CableServer) -> Starlette:
    """``/__admin/*``: server-side actions the suite triggers over HTTP (fixture only)."""
    ok = {"ok": True}

    async def broadcast(request: Request) -> JSONResponse:
        await cable.broadcast(request.query_params["stream"], json.loads(await request.body()))
        return JSONResponse(ok)

    async def disconnect(request: Request) -> JSONResponse:
        reconnect = request.query_params.get("reconnect", "true") != "false"
        await cable.remote_connections.where(current_user=request.query_params["user"]).disconnect(reconnect=reconnect)
        return JSONResponse(ok)

    async def restart(request: Request) -> JSONResponse:
        cable.restart()
        return JSONResponse(ok)

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"connections": len(cable.open_connections_statistics())})

    async def statistics(request: Request) -> JSONResponse:
        connections = [
            {
                "identifier": stats.identifier,
                "started_at": stats.started_at.timestamp(),
                "subscriptions": list(stats.subscriptions),
                "request_id": stats.request_id,
            }
            for stats in cable.open_connections_statistics()
        ]
        return JSONResponse({"connections": connections})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "server": "cable-server", "version": cable_server.__version__})

    return Starlette(
        routes=[
            Route("/__admin/broadcast", broadcast, methods=["POST"]),
            Route("/__admin/disconnect", disconnect, methods=["POST"]),
            Route("/__admin/restart", restart, methods=["POST"]),
            Route("/__admin/stats", stats),
            Route("/__admin/statistics", statistics),
            Route("/__admin/health", health),
        ]
    )


def create_app(settings: Settings | None = None) -> CableServer:
    cable = CableServer(
        connection_class=FixtureConnection,
        channels=CHANNELS,
        settings=settings or Settings(allowed_origins=ALLOWED_ORIGINS),
    )
    cable.app = admin_routes(cable)
    return cable


if __name__ == "__main__":
    cli_main(["protocol_tests.fixture:create_app", *sys.argv[1:]])
