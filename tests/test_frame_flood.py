"""Frames, not only commands, are limited per connection: every frame a client sends is counted
where it is parsed (pings and continuation frames too), and a client past ``frame_rate`` (holding
``frame_burst``) is closed with 1008 while everyone else is served."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from cable_server.limits import TokenBucket
from protocol_tests.client import ident

from .conftest import ServerFactory
from .rawws import CONTINUATION, PING, PONG, TEXT, Closed, RawCable, masked
from .test_observability import scrape

ROOM = ident("EchoChannel", room="frames")


def test_a_token_bucket_gives_its_burst_then_its_rate_and_takes_all_or_nothing() -> None:
    now = [0.0]
    bucket = TokenBucket(10, 5, clock=lambda: now[0])
    assert bucket.take(5) and not bucket.take()
    now[0] += 0.25  # 2.5 tokens back
    assert not bucket.take(3) and bucket.take(2) and not bucket.take()
    now[0] += 100  # never more than the burst
    assert bucket.level() == 5


async def flood(client: RawCable, frame: bytes, count: int) -> None:
    """``count`` copies of ``frame`` in writes of 1,000, as fast as the socket takes them; stops
    when the server has closed."""
    loop = asyncio.get_running_loop()
    try:
        for _ in range(count // 1000):
            await loop.sock_sendall(client.sock, frame * 1000)
    except OSError:
        pass


async def closed_with(client: RawCable) -> tuple[int, bytes, int]:
    """The close frame the server sent (code, reason), and how many pongs came before it."""
    async with asyncio.timeout(10):
        frames = await client.read_until_closed()
    code_and_reason = next(payload for opcode, payload in frames if opcode == 0x8)
    pongs = sum(opcode == PONG for opcode, _ in frames)
    return int.from_bytes(code_and_reason[:2], "big"), code_and_reason[2:], pongs


@pytest.mark.parametrize(
    ("first", "frame"),
    [(b"", masked(PING, b"")), (masked(TEXT, b'{"command":', fin=False), masked(CONTINUATION, b"", fin=False))],
    ids=["pings", "empty-continuations"],
)
async def test_a_frame_flood_closes_the_flooder_with_1008_and_others_are_served(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture, first: bytes, frame: bytes
) -> None:
    """One socket sending 200,000 pings (or empty continuation frames, which no command limit
    saw) had a core answering them; now it is closed with 1008 after about a burst of them,
    logged once and counted, and a bystander's echo still arrives."""
    server = await serve(frame_rate=100, frame_burst=1000)
    bystander = await server.client()
    await bystander.subscribe(ROOM)
    flooder = await RawCable.connect(server.port)
    try:
        await asyncio.get_running_loop().sock_sendall(flooder.sock, first)
        sending = asyncio.ensure_future(flood(flooder, frame, 200_000))
        code, reason, pongs = await closed_with(flooder)
        await sending
    finally:
        flooder.close()
    assert (code, reason) == (1008, b"Too many frames")
    assert pongs <= 1000 + 700  # the burst, and what one slice of a read holds (not the whole read: 40,000)
    await bystander.perform(ROOM, "echo", n=1)
    assert (await bystander.recv())["message"]["n"] == 1
    flooded = [r for r in caplog.records if r.levelno == logging.WARNING and "frames a second" in r.getMessage()]
    assert len(flooded) == 1
    assert (await scrape(server))['cable_limit_hits_total{kind="frame_rate"}'] == 1


async def test_a_message_in_many_fragments_within_the_burst_is_a_command_like_any(serve: ServerFactory) -> None:
    """A client that fragments a message into 500 frames (within the burst of 1,000) is not flooding."""
    server = await serve(frame_rate=100, frame_burst=1000)
    client = await RawCable.connect(server.port)
    try:
        await client.subscribe(ROOM)
        text = json.dumps({"command": "message", "identifier": ROOM, "data": json.dumps({"action": "echo", "n": 500})})
        pieces = [text[i : i + 1] for i in range(len(text))] + [""] * (500 - len(text))
        frames = [masked(TEXT, pieces[0].encode(), fin=False)]
        frames += [masked(CONTINUATION, piece.encode(), fin=False) for piece in pieces[1:-1]]
        frames.append(masked(CONTINUATION, pieces[-1].encode()))
        assert len(frames) == 500
        await asyncio.get_running_loop().sock_sendall(client.sock, b"".join(frames))
        message = await client.recv()
        while message.get("type") == "ping":
            message = await client.recv()
        assert message["message"] == {"action": "echo", "n": 500}
    finally:
        client.close()


async def test_no_frame_limit_at_a_rate_of_zero(serve: ServerFactory) -> None:
    server = await serve(frame_rate=0, frame_burst=10)
    client = await RawCable.connect(server.port)
    try:
        await asyncio.get_running_loop().sock_sendall(client.sock, masked(PING, b"") * 2000)
        await client.subscribe(ROOM)
    except Closed as closed:
        pytest.fail(f"closed with {closed.code}")
    finally:
        client.close()
