"""Broadcasting: payload shapes, fan-out, order, streams, callbacks, timers, HTTP routes."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from cable_server import Settings
from protocol_tests.client import CableClient, ident

from .conftest import RunningServer, ServerFactory
from .fixture_app import create_app

pytestmark = pytest.mark.both_backends  # every case also runs on the Redis pub/sub


def data_frame(identifier: str, message_json: str) -> str:
    return '{"identifier":' + json.dumps(identifier) + ',"message":' + message_json + "}"


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        ({"x": 1}, '{"x":1}'),
        ("plain string", '"plain string"'),
        ('{"a":1}', '"{\\"a\\":1}"'),
        ([1, "two", {"three": 3}], '[1,"two",{"three":3}]'),
        (42, "42"),
        (None, "null"),
        (
            {"f": 1e20, "g": 0.1, "h": -0.0, "u": "\u2028\u2029<>&'\"/"},
            '{"f":1.0e+20,"g":0.1,"h":-0.0,"u":"\\u2028\\u2029\\u003c\\u003e\\u0026\'\\"/"}',
        ),
        ({"big": 12345678901234567890, "nan": float("nan")}, '{"big":12345678901234567890,"nan":null}'),
    ],
)
async def test_broadcast_payloads_arrive_as_rails_encodes_them(server: RunningServer, message: Any, wire: str) -> None:
    """Hashes, strings (JSON-looking ones stay strings), arrays, numbers and null arrive Rails-exact."""
    client = await server.client()
    i = ident("EchoChannel", room="b")
    await client.subscribe(i)
    await server.cable.broadcast("echo_b", message)
    assert await client.recv_raw() == data_frame(i, wire)


async def test_clients_in_one_room_all_receive_and_other_rooms_do_not(server: RunningServer) -> None:
    """A broadcast reaches every subscriber of its stream and nobody else."""
    room1 = [await server.client() for _ in range(3)]
    room2 = await server.client()
    for client in room1:
        await client.subscribe(ident("EchoChannel", room="one"))
    await room2.subscribe(ident("EchoChannel", room="two"))
    await server.cable.broadcast("echo_one", {"for": "one"})
    for client in room1:
        assert (await client.recv())["message"] == {"for": "one"}
    await room2.expect_silence(0.3)


async def test_a_burst_arrives_complete_and_in_order(server: RunningServer) -> None:
    """500 broadcasts in a row reach each of several subscribers in the order sent."""
    clients = [await server.client() for _ in range(3)]
    for client in clients:
        await client.subscribe(ident("EchoChannel", room="burst"))
    for n in range(500):
        await server.cable.broadcast("echo_burst", {"n": n})
    for client in clients:
        assert [(await client.recv())["message"]["n"] for _ in range(500)] == list(range(500))


async def test_action_broadcasts_reach_every_subscriber(server: RunningServer) -> None:
    """A broadcast made inside an action reaches the sender and the others."""
    a, b = await server.client(), await server.client()
    i = ident("EchoChannel", room="chat")
    await a.subscribe(i)
    await b.subscribe(i)
    await a.perform(i, "shout", payload={"text": "hi"})
    for client in (a, b):
        assert (await client.recv())["message"] == {"text": "hi"}


async def test_several_streams_and_stopping_one(server: RunningServer) -> None:
    """A subscription hears each of its streams; stop_stream_from and stop_all_streams end them."""
    client = await server.client()
    multi, echo = ident("MultiStreamChannel"), ident("EchoChannel")
    await client.subscribe(multi)
    await client.subscribe(echo)
    await client.perform(echo, "follow", stream="a")
    await client.expect_silence(0.1)
    await server.cable.broadcast("a", "to a")
    await server.cable.broadcast("b", "to b")
    got = sorted((m["identifier"], m["message"]) for m in [await client.recv() for _ in range(3)])
    assert got == sorted([(multi, "to a"), (multi, "to b"), (echo, "to a")])
    await client.perform(echo, "unfollow", stream="a")
    await client.perform(echo, "follow", stream="c")
    await client.expect_silence(0.1)
    await server.cable.broadcast("a", "a again")
    await server.cable.broadcast("c", "to c")
    got = sorted((m["identifier"], m["message"]) for m in [await client.recv() for _ in range(2)])
    assert got == sorted([(multi, "a again"), (echo, "to c")])
    await client.perform(echo, "unfollow_all")
    await client.expect_silence(0.1)
    await server.cable.broadcast("c", "c again")
    await client.expect_silence(0.3)


async def test_stream_callbacks_get_decoded_or_raw_messages(server: RunningServer) -> None:
    """stream_from with a callback gets the decoded message, or the JSON text when raw."""
    client = await server.client()
    i = ident("InterceptChannel")
    await client.subscribe(i)
    await server.cable.broadcast("intercept", {"a": 1})
    assert (await client.recv())["message"] == {"wrapped": {"a": 1}}
    await server.cable.broadcast("intercept_raw", {"a": 1})
    assert (await client.recv())["message"] == {"raw": '{"a":1}'}


async def test_periodic_timers_start_after_confirmation_and_stop_on_unsubscribe(server: RunningServer) -> None:
    """periodically ticks after the confirmation, and stops once unsubscribed."""
    client = await server.client()
    i = ident("TickChannel", every=0.1)
    await client.send({"command": "subscribe", "identifier": i})
    assert (await client.recv())["type"] == "confirm_subscription"
    assert [(await client.recv())["message"] for _ in range(2)] == [{"tick": 1}, {"tick": 2}]
    await client.unsubscribe(i)
    with contextlib.suppress(TimeoutError):
        await client.recv(0.15)  # a tick may already be on its way
    await client.expect_silence(0.4)


async def test_broadcast_from_an_http_route(serve: ServerFactory) -> None:
    """server.broadcast works from a plain HTTP route of the same process."""
    cable = create_app(Settings(ping_interval=0.5, shutdown_timeout=1.0))

    async def say(request: Request) -> JSONResponse:
        body = await request.json()
        await cable.broadcast(f"echo_{body['room']}", body["message"])
        return JSONResponse({"ok": True})

    cable.app = Starlette(routes=[Route("/say", say, methods=["POST"])])
    running = await serve(cable)
    client = await running.client()
    await client.subscribe(ident("EchoChannel", room="web"))
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{running.http_url}/say", json={"room": "web", "message": {"from": "http"}})
    assert response.json() == {"ok": True}
    assert (await client.recv())["message"] == {"from": "http"}


async def test_one_frame_is_built_per_identifier_not_per_subscriber(server: RunningServer) -> None:
    """Subscribers sharing an identifier receive the very same frame text."""
    clients: list[CableClient] = [await server.client() for _ in range(4)]
    i = ident("EchoChannel", room="shared")
    for client in clients:
        await client.subscribe(i)
    await server.cable.broadcast("echo_shared", {"same": True})
    frames = {await client.recv_raw() for client in clients}
    assert frames == {data_frame(i, '{"same":true}')}
