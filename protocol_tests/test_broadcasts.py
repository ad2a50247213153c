"""Broadcasts from the server side: payload shapes, exact bytes, fan-out, isolation, order, callbacks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .client import CableClient, ident
from .conftest import Connect, Target


@pytest.fixture
async def client(connect: Connect) -> CableClient:
    client = await connect()
    await client.subscribe(ident("EchoChannel", room="b"))
    return client


@pytest.mark.parametrize(
    ("payload", "raw"),
    [
        ({"x": 1}, '{"x":1}'),
        ("plain string", '"plain string"'),
        ('{"a":1}', '"{\\"a\\":1}"'),
        ([1, "two", None], '[1,"two",null]'),
        (42, "42"),
        (None, "null"),
        (True, "true"),
    ],
    ids=["hash", "string", "json-looking-string", "array", "number", "null", "boolean"],
)
async def test_broadcast_payload_shapes(client: CableClient, target: Target, payload: Any, raw: str) -> None:
    """Any JSON value broadcast arrives as the message; a string stays a string, even one holding JSON."""
    target.admin("broadcast", payload, stream="echo_b")
    frame = await client.recv_raw()
    assert frame == '{"identifier":' + json.dumps(ident("EchoChannel", room="b")) + ',"message":' + raw + "}"


async def test_broadcast_numbers_and_escapes_are_rails_bytes(client: CableClient, target: Target) -> None:
    """Floats as Ruby writes them, <>& and U+2028/9 escaped, quotes and slashes as JSON needs."""
    body = '{"f":1e20,"g":0.1,"h":-0.0,"i":12345678901234567890,"u":"\\u2028\\u2029<>&\'\\"/"}'
    target.admin("broadcast", json.loads(body), stream="echo_b")
    frame = await client.recv_raw()
    expected = '{"f":1.0e+20,"g":0.1,"h":-0.0,"i":12345678901234567890,"u":"\\u2028\\u2029\\u003c\\u003e\\u0026\'\\"/"}'
    assert frame.endswith(',"message":' + expected + "}")


async def test_broadcast_from_an_action_reaches_every_member_of_the_room(connect: Connect) -> None:
    """Two clients in one room both receive what one broadcasts; the sender too."""
    room = ident("EchoChannel", room="shared")
    alice, bob = await connect("alice"), await connect("bob")
    for member in (alice, bob):
        await member.subscribe(room)
    await alice.perform(room, "broadcast", text="hi all")
    for member in (alice, bob):
        assert (await member.recv())["message"] == {"text": "hi all", "action": "broadcast"}


async def test_rooms_are_isolated(connect: Connect, target: Target) -> None:
    """A broadcast to one room never reaches a client in another."""
    red, blue = await connect("red"), await connect("blue")
    await red.subscribe(ident("EchoChannel", room="red"))
    await blue.subscribe(ident("EchoChannel", room="blue"))
    target.admin("broadcast", {"for": "red"}, stream="echo_red")
    assert (await red.recv())["message"] == {"for": "red"}
    await blue.expect_silence()


async def test_one_subscription_with_two_streams(connect: Connect) -> None:
    """A subscription streaming from two names receives a broadcast on each."""
    client = await connect()
    channel = ident("DeferredChannel", room="two")
    await client.send({"command": "subscribe", "identifier": channel})
    assert (await client.recv())["message"] == {"hello": "from subscribed"}
    assert (await client.recv())["type"] == "confirm_subscription"
    await client.perform(channel, "broadcast_both", n=1)
    frames = [await client.recv() for _ in range(2)]
    assert frames == [{"identifier": channel, "message": {"n": 1, "action": "broadcast_both"}}] * 2


@pytest.mark.differs("broadcast_order")
async def test_a_burst_of_broadcasts(connect: Connect, rails_way: bool) -> None:
    """200 back-to-back broadcasts all arrive; with us, always in the order broadcast."""
    room = ident("EchoChannel", room="burst")
    sender, listener = await connect("sender"), await connect("listener")
    for client in (sender, listener):
        await client.subscribe(room)
    await sender.perform(room, "burst", n=200)
    for client in (listener, sender):  # the sender too: unread, its 200 frames held its close for 10 s
        received = [(await client.recv())["message"]["seq"] for _ in range(200)]
        if rails_way:
            assert sorted(received) == list(range(1, 201))
        else:
            assert received == list(range(1, 201))


@pytest.mark.parametrize(("coder", "expected"), [(None, {"raw": '{"a":[1,2]}'}), ("json", {"decoded": {"a": [1, 2]}})])
async def test_stream_callbacks(connect: Connect, target: Target, coder: str | None, expected: dict[str, Any]) -> None:
    """stream_from with a callback gets the broadcast as JSON text, or decoded with a JSON coder."""
    client = await connect()
    params = {"room": "cb"} if coder is None else {"room": "cb", "coder": coder}
    channel = ident("RawStreamChannel", **params)
    await client.subscribe(channel)
    target.admin("broadcast", {"a": [1, 2]}, stream="raw_cb")
    assert await client.recv() == {"identifier": channel, "message": expected}


async def test_periodic_timer_ticks_after_the_confirmation(connect: Connect) -> None:
    """periodically: the confirmation first, then {"tick":1}, {"tick":2} about every 0.5 s."""
    client = await connect()
    channel = ident("TickerChannel")
    await client.send({"command": "subscribe", "identifier": channel})
    assert (await client.recv())["type"] == "confirm_subscription"
    assert [(await client.recv())["message"] for _ in range(2)] == [{"tick": 1}, {"tick": 2}]


async def test_periodic_timer_stops_on_unsubscribe(connect: Connect) -> None:
    """Once unsubscribed, the timer sends nothing more."""
    client = await connect()
    channel = ident("TickerChannel")
    await client.subscribe(channel)
    assert (await client.recv())["message"] == {"tick": 1}
    await client.unsubscribe(channel)
    await client.expect_silence(1.2)


@pytest.mark.differs("broadcast_order")
async def test_gpt_chat_channel_streams_chunks_in_order(connect: Connect, rails_way: bool) -> None:
    """GptChatChannel (fake model): one {"content": chunk} per chunk; with us always in order (Rails garbles it)."""
    client = await connect("7")
    channel = ident("GptChatChannel", room="7")
    await client.subscribe(channel)
    await client.perform(channel, "send_message", user_content="hi", system_content="be brief", user_id="7")
    chunks = [(await client.recv())["message"]["content"] for _ in range(4)]
    expected = ["Hello", ", ", "world", "!"]
    assert (sorted(chunks) == sorted(expected)) if rails_way else (chunks == expected)
