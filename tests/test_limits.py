"""Limits per client, over real sockets: what the client gets, what the log says, what /metrics counts.

Every limit is a setting; these tests set small values. A hit is refused the way the protocol
allows, logged once at warning with the peer, and counted in ``cable_limit_hits_total{kind}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
import websockets

from cable_server.limits import Admission, CommandLimiter, address_key
from cable_server.testing import FakeOpenAI, Reply
from protocol_tests.client import CableClient, assert_usable, ident

from .chat_helpers import TERMINAL, read_answer, room, start_chat
from .conftest import RunningServer, ServerFactory
from .test_observability import scrape

ROOM = ident("EchoChannel", room="limits")


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


async def test_a_subscription_beyond_max_subscriptions_is_rejected(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """max_subscriptions=3: the 4th identifier gets reject_subscription and a warning; unsubscribing makes room."""
    server = await serve(max_subscriptions=3)
    client = await server.client("?user=alice")
    for name in ("a", "b", "c"):
        await client.subscribe(ident("EchoChannel", room=name))
    fourth = ident("EchoChannel", room="d")
    await client.send({"command": "subscribe", "identifier": fourth})
    assert await client.recv() == {"identifier": fourth, "type": "reject_subscription"}
    [record] = warnings(caplog, "3 subscriptions already")
    assert fourth in record.getMessage() and record.__dict__["identifiers"] == {"current_user": "alice"}
    await client.unsubscribe(ident("EchoChannel", room="a"))
    await client.subscribe(fourth)
    assert (await scrape(server))['cable_limit_hits_total{kind="subscriptions"}'] == 1


async def test_commands_over_the_rate_are_dropped_unexecuted(serve: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    """A bucket of 10 refilled at 1/s: of 20 echoes sent at once 9 run (the subscribe took a token), the
    rest are dropped with one warning, the connection stays open, and a second later it may send again."""
    server = await serve(command_rate=1, command_burst=10)
    client = await server.client()
    await client.subscribe(ROOM)
    for n in range(20):
        await client.perform(ROOM, "echo", n=n)
    assert [(await client.recv())["message"]["n"] for _ in range(9)] == list(range(9))
    await client.expect_silence(0.3)
    assert len(warnings(caplog, "dropping commands")) == 1
    await asyncio.sleep(1.1)
    await client.perform(ROOM, "echo", n="later")
    assert (await client.recv())["message"]["n"] == "later"
    metrics = await scrape(server)
    assert metrics['cable_limit_hits_total{kind="command_rate"}'] == 1
    assert metrics['cable_limit_hits_total{kind="command_flood"}'] == 0


@pytest.mark.parametrize(
    ("settings", "pause"),
    [({"max_dropped_commands": 20}, 0.0), ({"max_flood_seconds": 0.5}, 0.05)],
    ids=["after 20 drops", "after 0.5 s of flooding"],
)
async def test_a_sustained_flood_disconnects_the_client(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture, settings: dict[str, float], pause: float
) -> None:
    """Still over the rate after max_dropped_commands drops, or max_flood_seconds: disconnect invalid_request,
    reconnect true, close 1000. Others on the same server are unaffected."""
    server = await serve(command_rate=1, command_burst=5, **settings)
    bystander = await server.client()
    flooder = await server.client()
    await flooder.subscribe(ROOM)
    frames: list[str] = []
    with pytest.raises(websockets.ConnectionClosed):
        for n in range(200):
            await flooder.perform(ROOM, "echo", n=n)
            await asyncio.sleep(pause)
    while True:
        try:
            frames.append(await flooder.recv_raw(1))
        except websockets.ConnectionClosed:
            break
    assert len(frames) == 5 and frames[-1] == '{"type":"disconnect","reason":"invalid_request","reconnect":true}'
    assert flooder.ws.protocol.close_rcvd is not None and flooder.ws.protocol.close_rcvd.code == 1000
    assert len(warnings(caplog, "still over the command rate")) == 1
    assert (await scrape(server))['cable_limit_hits_total{kind="command_flood"}'] == 1
    await assert_usable(bystander)


async def test_connections_beyond_the_limit_per_address_get_http_429(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """max_connections_per_address=2: a third socket from 127.0.0.1 is refused before the upgrade; one closes, one more fits."""
    server = await serve(max_connections_per_address=2)
    first, _second = await server.client(), await server.client()
    with pytest.raises(websockets.InvalidStatus) as refused:
        await server.client()
    assert refused.value.response.status_code == 429
    [record] = warnings(caplog, "refused a connection from 127.0.0.1")
    assert record.__dict__["peer"] == "127.0.0.1"
    await first.close()
    await asyncio.sleep(0.1)
    await assert_usable(await server.client())
    assert (await scrape(server))['cable_limit_hits_total{kind="connections_per_address"}'] == 1


async def test_behind_a_proxy_connections_count_per_forwarded_address(serve: ServerFactory) -> None:
    """From a trusted proxy (uvicorn's forwarded_allow_ips, 127.0.0.1 by default), X-Forwarded-For is the address that counts."""
    await _one_connection_per_address(serve, "203.0.113.7", "203.0.113.7", other="203.0.113.8")


async def test_the_addresses_of_one_ipv6_network_count_as_one(serve: ServerFactory) -> None:
    """A /64 is what one subscriber is given: its addresses share one count (else an attacker has
    2**64 shares); another /64 has its own."""
    await _one_connection_per_address(serve, "2001:db8:1:2::7", "2001:db8:1:2:ffff::1", other="2001:db8:1:3::7")


async def _one_connection_per_address(serve: ServerFactory, first: str, same: str, *, other: str) -> None:
    """With max_connections_per_address=1 behind a trusted proxy: ``first`` connects, ``same``
    counts as its address and gets 429, ``other`` is another address and connects."""
    server = await serve(max_connections_per_address=1)

    async def from_address(address: str) -> CableClient:
        return await server.client(headers={"X-Forwarded-For": address})

    await from_address(first)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await from_address(same)
    assert refused.value.response.status_code == 429
    await assert_usable(await from_address(other))


def test_an_address_key_is_an_ipv4_address_or_an_ipv6_network() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("2001:db8:1:2:3:4:5:6") == address_key("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    assert address_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert address_key("unix:/run/cable.sock") == "unix:/run/cable.sock"


async def test_one_anonymous_connection_cannot_start_answers_in_many_rooms(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """max_generations_per_user=2: an anonymous connection asking in a third room it joined gets busy; 2 requests upstream."""
    chat = await start_chat(serve, fake_openai, max_generations_per_user=2)
    fake_openai.default = Reply(chunks=["x"] * 20, delay=0.02)
    anonymous = await chat.user(None, subscribe=None)
    names = ("r1", "r2", "r3")
    for name in names:
        await anonymous.subscribe(room(name))
    for name in names:
        await anonymous.perform(room(name), "send_message", user_content="hi", user_id=name)
    frames: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    while not all(frames[name] and frames[name][-1]["event"] in TERMINAL for name in names):
        frame = await anonymous.recv(5)
        frames[json.loads(frame["identifier"])["room"]].append(frame["message"])
    assert [frames[name][-1]["event"] for name in names] == ["done", "done", "error"]
    refused = frames["r3"]
    assert refused == [
        {"content": "", "event": "error", "error": {"category": "busy", "message": refused[0]["error"]["message"]}}
    ]
    assert "2 answers" in refused[0]["error"]["message"]
    [record] = warnings(caplog, "generations_per_user")
    assert "public_r3" in record.getMessage()
    await fake_openai.wait_for_requests(2)
    await asyncio.sleep(0.1)
    assert len(fake_openai.requests) == 2
    assert (await scrape(chat.server))['cable_limit_hits_total{kind="generations_per_user"}'] == 1


async def test_generation_limits_in_total_and_on_prompt_length_are_logged_and_counted(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A prompt over max_prompt_chars and a request over max_concurrent + max_queued: each refused, logged, counted."""
    chat = await start_chat(serve, fake_openai, max_concurrent=1, max_queued=0, max_prompt_chars=10)
    fake_openai.default = Reply(chunks=["x"] * 10, delay=0.02)
    alice, bob = await chat.user("alice"), await chat.user("bob")
    await alice.perform(room("alice"), "send_message", user_content="x" * 11)
    assert (await alice.recv())["message"]["error"]["category"] == "invalid_request"
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await fake_openai.wait_for_requests(1)
    await bob.perform(room("bob"), "send_message", user_content="hi")
    assert (await read_answer(bob, room("bob"))).last["error"]["category"] == "overloaded"
    assert len(warnings(caplog, "prompt_length")) == 1 and len(warnings(caplog, "generations_total")) == 1
    metrics = await scrape(chat.server)
    assert metrics['cable_limit_hits_total{kind="prompt_length"}'] == 1
    assert metrics['cable_limit_hits_total{kind="generations_total"}'] == 1
    assert metrics['cable_generation_errors_total{category="overloaded"}'] == 1


async def test_defaults_leave_room_for_loopback_load(server: RunningServer) -> None:
    """The defaults: 200 sockets from 127.0.0.1, each subscribing and performing, are all served."""
    clients = await asyncio.gather(*(server.client() for _ in range(200)))
    await asyncio.gather(*(c.subscribe(ROOM) for c in clients))
    metrics = await scrape(server)
    assert metrics["cable_connections"] == 200
    assert sum(value for name, value in metrics.items() if name.startswith("cable_limit_hits_total")) == 0
    await asyncio.gather(*(c.close() for c in clients))


def test_a_flood_ends_once_the_bucket_is_full_again() -> None:
    """Sans I/O: drops count toward a disconnect only within one flood; a client quiet for burst/rate starts afresh."""
    now = [0.0]
    limiter = CommandLimiter(10, 2, max_dropped=3, max_seconds=60, clock=lambda: now[0])
    assert [limiter.admit() for _ in range(4)] == [Admission.RUN, Admission.RUN, Admission.DROP_FIRST, Admission.DROP]
    now[0] += 0.2  # 2 tokens: full again
    assert [limiter.admit() for _ in range(3)] == [Admission.RUN, Admission.RUN, Admission.DROP_FIRST]
    assert [limiter.admit() for _ in range(2)] == [Admission.DROP, Admission.DISCONNECT]
