"""A connection's life: heartbeat, authentication, buffering before the welcome, identity."""

from __future__ import annotations

import asyncio
import time

import pytest

from .client import closed_with, ident
from .conftest import Connect, Target

UNAUTHORIZED = '{"type":"disconnect","reason":"unauthorized","reconnect":false}'


async def test_pings_every_three_seconds_with_integer_unix_time(connect: Connect) -> None:
    """Pings {"type":"ping","message":<int seconds>} follow the welcome, at most 3.5 s apart."""
    client = await connect()
    welcomed = time.monotonic()
    arrivals, pings = [], []
    for _ in range(2):
        pings.append(await client.recv(timeout=4, pings=True))
        arrivals.append(time.monotonic())
    assert arrivals[0] - welcomed <= 3.5
    assert arrivals[1] - arrivals[0] <= 3.5
    for ping in pings:
        assert list(ping) == ["type", "message"] and ping["type"] == "ping"
        assert isinstance(ping["message"], int) and abs(ping["message"] - time.time()) < 5
    assert pings[0]["message"] <= pings[1]["message"]


@pytest.mark.parametrize("where", ["query", "cookie"])
async def test_rejected_connection_gets_unauthorized_then_close(connect: Connect, where: str) -> None:
    """reject_unauthorized_connection: the unauthorized disconnect frame, then close 1000, no welcome."""
    if where == "query":
        client = await connect("reject", welcome=False)
    else:
        client = await connect(welcome=False, headers={"Cookie": "user=reject"})
    assert await client.recv_raw(pings=True) == UNAUTHORIZED
    assert await closed_with(client) == 1000


@pytest.mark.differs("connect_raises")
async def test_exception_in_connect(connect: Connect, rails_way: bool) -> None:
    """An error in connect: Rails leaves the socket silent and open; we close it with 1011."""
    client = await connect("raise", welcome=False)
    if rails_way:
        await client.expect_silence(4, pings=True)
        assert client.ws.close_code is None
    else:
        assert await closed_with(client) == 1011


async def test_commands_sent_before_the_welcome_run_after_it(connect: Connect) -> None:
    """A subscribe sent while connect() is still running is answered after the welcome."""
    client = await connect("slow", welcome=False)
    channel = ident("EchoChannel", room="early")
    await client.send({"command": "subscribe", "identifier": channel})
    assert await client.recv_raw(timeout=5) == '{"type":"welcome"}'
    assert await client.recv() == {"identifier": channel, "type": "confirm_subscription"}


async def test_no_ping_reaches_a_connection_before_its_welcome(connect: Connect) -> None:
    """The first frame of a slow connection is its welcome, never a ping."""
    client = await connect("slow", welcome=False)
    assert await client.recv_raw(timeout=5, pings=True) == '{"type":"welcome"}'


@pytest.mark.parametrize(
    ("user", "cookie", "expected"),
    [("alice", None, "alice"), (None, "user=carol", "carol"), ("dave", "user=carol", "dave"), (None, None, "anonymous")],
    ids=["query", "cookie", "query-over-cookie", "anonymous"],
)
async def test_identity_comes_from_the_connection(connect: Connect, user: str | None, cookie: str | None, expected: str) -> None:
    """identified_by: the user set in connect() is what channels see as current_user."""
    headers = {"Cookie": cookie} if cookie else None
    client = await connect(user, headers=headers)
    channel = ident("EchoChannel", room="who")
    await client.subscribe(channel)
    await client.perform(channel, "ping_user")
    assert (await client.recv())["message"] == {"user": expected}


async def test_closed_connections_leave_the_server(connect: Connect, target: Target) -> None:
    """A client that closes is gone from the server's connection list."""
    before = target.stats()["connections"]
    clients = [await connect(f"leaver{n}") for n in range(3)]
    assert target.stats()["connections"] == before + 3
    for client in clients:
        await client.close()
    for _ in range(50):
        if target.stats()["connections"] == before:
            break
        await asyncio.sleep(0.1)
    assert target.stats()["connections"] == before


async def test_open_connections_statistics(connect: Connect, target: Target) -> None:
    """open_connections_statistics lists a welcomed connection: its identifier, start time and
    subscription identifiers as sent, in subscription order (no request id without one)."""
    before = time.time()
    client = await connect("statistics-user")
    channels = [ident("EchoChannel", room="stats-b"), '{ "channel" : "EchoChannel", "room" : "stats-a" }']
    for channel in channels:
        await client.subscribe(channel)
    [mine] = [stats for stats in target.statistics() if stats["identifier"] == "statistics-user"]
    assert mine["subscriptions"] == channels
    assert before - 0.5 <= mine["started_at"] <= time.time()
    assert mine["request_id"] is None
