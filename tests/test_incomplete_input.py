"""Input a client leaves incomplete is bounded in time and, per client address, in bytes: a frame
or fragmented message not whole within ``incomplete_timeout`` closes its socket with 1008, and a
read that would take the bytes held by all the sockets of one address past
``max_incomplete_bytes_per_address`` closes that socket with 1008. Before, 400 sockets from one
address each stalled in a 1 MB frame held 400 MB, all still open after 13 s.

The server holds the bytes; nothing the client sees tells how many, so the count is read where
the server keeps it (the protocol class's :class:`~cable_server.limits.HeldInput`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from cable_server.limits import HeldInput
from cable_server.uvicorn_ws import CableWebSocketProtocol
from protocol_tests.client import ident

from .conftest import RunningServer, ServerFactory
from .rawws import CONTINUATION, PING, TEXT, RawCable, masked
from .test_frame_flood import closed_with
from .test_observability import scrape

ROOM = ident("EchoChannel", room="incomplete")
TIMEOUT = 'cable_limit_hits_total{kind="incomplete_timeout"}'
BUDGET = 'cable_limit_hits_total{kind="incomplete_bytes_per_address"}'


def test_an_address_holds_what_its_sockets_hold_and_forgets_it_at_zero() -> None:
    """Each socket's bytes are added to its address's total, changes replace them, and an
    address holding nothing has no entry."""
    held = HeldInput(100)
    assert held.hold("a", 0, 30) and held.hold("a", 0, 40) and held.hold("b", 0, 90)
    assert (held.held("a"), held.held("b"), held.held()) == (70, 90, 160)
    assert held.hold("a", 30, 10)  # that socket's frame moved on: 10 held instead of 30
    assert held.held("a") == 50
    assert held.hold("a", 10, 0) and held.hold("a", 40, 0)
    assert held.held("a") == 0 and held._held == {"b": 90}


def test_a_read_past_the_address_budget_is_refused_and_recorded_not() -> None:
    """Growing past the budget is refused and changes nothing; the refused socket then lets go of
    what it held; shrinking is always allowed; another address has its own budget."""
    held = HeldInput(100)
    assert held.hold("a", 0, 60) and held.hold("a", 0, 30)
    assert not held.hold("a", 30, 50)  # 60 + 50 > 100
    assert held.held("a") == 90
    assert held.hold("a", 30, 0) and held.held("a") == 60
    assert held.hold("b", 0, 100) and not held.hold("b", 0, 1)
    assert held.hold("a", 0, 40)  # exactly the budget


def test_a_budget_of_zero_is_no_budget() -> None:
    held = HeldInput(0)
    assert held.hold("a", 0, 1 << 40) and held.held("a") == 1 << 40


def held_input(server: RunningServer) -> HeldInput:
    """The count the server keeps, per address, of the bytes its sockets hold of incomplete input."""
    protocol = server.uvicorn.config.ws
    assert isinstance(protocol, type) and issubclass(protocol, CableWebSocketProtocol)
    return protocol.held_input


async def eventually(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def holds_more(held: HeldInput, address: str, *, than: int) -> None:
    await eventually(lambda: held.held(address) > than)


def echo_command(size: int, n: int) -> bytes:
    """An ``echo`` command of exactly ``size`` bytes, ``n`` in its data (padded with ``x``)."""
    bare = len(json.dumps({"command": "message", "identifier": ROOM, "data": json.dumps({"action": "echo", "n": n, "pad": ""})}))
    data = json.dumps({"action": "echo", "n": n, "pad": "x" * (size - bare)})
    command = json.dumps({"command": "message", "identifier": ROOM, "data": data}).encode()
    assert len(command) == size
    return command


async def echoed(client: RawCable) -> Any:
    """The ``n`` of the next echo the client receives (pings and the welcome skipped)."""
    while True:
        message = await client.recv()
        if message.get("identifier") == ROOM and "n" in message.get("message", {}):
            return message["message"]["n"]


async def subscribed(port: int, **options: Any) -> RawCable:
    client = await RawCable.connect(port, **options)
    await client.subscribe(ROOM)
    return client


async def send(client: RawCable, data: bytes) -> None:
    await asyncio.get_running_loop().sock_sendall(client.sock, data)


async def test_a_stalled_partial_frame_is_closed_at_the_deadline_with_1008(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Half a frame and then nothing: the socket is closed with 1008 once ``incomplete_timeout``
    has passed (not before), logged once at warning with the peer, counted; the count of bytes
    held goes back to 0; a bystander is served throughout."""
    server = await serve(incomplete_timeout=0.5)
    bystander = await subscribed(server.port)
    staller = await subscribed(server.port)
    frame = masked(TEXT, echo_command(100_000, 1))
    try:
        started = time.monotonic()
        await send(staller, frame[:50_000])
        await eventually(lambda: held_input(server).held() > 0)
        code, reason, _ = await closed_with(staller)
        waited = time.monotonic() - started
    finally:
        staller.close()
    assert (code, reason) == (1008, b"Incomplete message timed out")
    assert 0.5 <= waited < 3
    timed_out = [r for r in caplog.records if r.levelno == logging.WARNING and "incomplete_timeout" in r.getMessage()]
    assert len(timed_out) == 1 and "127.0.0.1:" in timed_out[0].getMessage()
    assert held_input(server).held() == 0
    metrics = await scrape(server)
    assert (metrics[TIMEOUT], metrics[BUDGET]) == (1, 0)
    await send(bystander, masked(TEXT, echo_command(200, 2)))
    assert await echoed(bystander) == 2
    bystander.close()


async def test_a_slow_frame_that_completes_in_time_is_served(serve: ServerFactory) -> None:
    """A 200 kB frame arriving in eleven pieces over 1.2 s, within a deadline of 2 s, is a command
    like any other; so is the next one, though the two together took longer than the deadline."""
    server = await serve(incomplete_timeout=2.0)
    client = await subscribed(server.port)
    try:
        for n in (1, 2):
            frame = masked(TEXT, echo_command(200_000, n))
            for start in range(0, len(frame), 20_001):
                await send(client, frame[start : start + 20_001])
                await asyncio.sleep(0.12)
            assert await echoed(client) == n
    finally:
        client.close()
    assert (await scrape(server))[TIMEOUT] == 0


async def test_a_stream_whose_every_read_ends_inside_a_frame_is_served_past_the_deadline(serve: ServerFactory) -> None:
    """Thirty messages written so that each write ends inside the next frame, over three seconds
    and a deadline of 0.5 s: the server always holds part of a frame, but each message completes
    in time (the deadline is each message's, not the connection's), so every one is served."""
    server = await serve(incomplete_timeout=0.5)
    client = await subscribed(server.port)
    stream = b"".join(masked(TEXT, echo_command(3_000, n)) for n in range(30))
    frame = len(stream) // 30
    try:
        for n in range(30):
            await send(client, stream[n * frame + (frame // 2 if n else 0) : (n + 1) * frame + frame // 2])
            await asyncio.sleep(0.1)
        assert [await echoed(client) for _ in range(30)] == list(range(30))
    finally:
        client.close()
    assert (await scrape(server))[TIMEOUT] == 0


async def test_a_frame_held_while_the_app_is_busy_is_given_time_once_the_server_reads_again(serve: ServerFactory) -> None:
    """A slow action (1.5 s), an echo and half of another echo in one write, the rest 0.1 s
    later, with a deadline of 0.5 s: the rest waits in the kernel while the server does not read
    (the app has not taken the first echo yet), which is not the client's time; both echoes
    are served once the action is done."""
    server = await serve(incomplete_timeout=0.5)
    client = await subscribed(server.port)
    slow = json.dumps({"command": "message", "identifier": ROOM, "data": json.dumps({"action": "slow", "seconds": 1.5})})
    third = masked(TEXT, echo_command(10_000, 3))
    try:
        await send(client, masked(TEXT, slow.encode()) + masked(TEXT, echo_command(200, 2)) + third[:5_000])
        await asyncio.sleep(0.1)
        await send(client, third[5_000:])
        message = await client.recv()
        while message.get("type") == "ping":
            message = await client.recv()
        assert message == {"identifier": ROOM, "message": {"slow": "done"}}
        assert [await echoed(client), await echoed(client)] == [2, 3]
    finally:
        client.close()
    assert (await scrape(server))[TIMEOUT] == 0


@pytest.mark.parametrize("more_fragments", [False, True], ids=["nothing-after-the-first", "fragments-and-pings-but-no-last"])
async def test_a_fragmented_message_that_never_ends_is_closed_at_the_deadline(serve: ServerFactory, more_fragments: bool) -> None:
    """The first fragment of a message and then no last one (nothing at all, or every 0.1 s a
    fragment that is not the last and a ping, each frame whole and answered): closed with 1008
    after the deadline, which runs from the message's first byte."""
    server = await serve(incomplete_timeout=0.5)
    client = await subscribed(server.port)
    first = masked(TEXT, b'{"command":"message",', fin=False)

    async def dribble() -> None:
        try:
            for _ in range(50):
                await asyncio.sleep(0.1)
                await send(client, masked(CONTINUATION, b" ", fin=False) + masked(PING, b""))
        except OSError:
            pass

    try:
        started = time.monotonic()
        await send(client, first)
        dribbling = asyncio.ensure_future(dribble() if more_fragments else asyncio.sleep(0))
        code, reason, pongs = await closed_with(client)
        waited = time.monotonic() - started
        dribbling.cancel()
    finally:
        client.close()
    assert (code, reason) == (1008, b"Incomplete message timed out")
    assert 0.5 <= waited < 3
    assert pongs >= (2 if more_fragments else 0)
    assert (await scrape(server))[TIMEOUT] == 1
    await eventually(lambda: held_input(server).held() == 0)


@pytest.mark.parametrize("apart", ["source-address", "forwarded-for"])
async def test_sockets_of_one_address_past_its_budget_are_closed_and_another_address_is_not(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture, apart: str
) -> None:
    """Six sockets of one address each hold 30 kB of a 60 kB frame, with a budget of 100 kB per
    address: the three whose reads would go past it are closed with 1008 and counted, the three
    others are served when their frames complete; three sockets of another address (another
    source address, or another ``X-Forwarded-For`` through the trusted proxy at 127.0.0.1, as
    ``max_connections_per_address`` tells addresses apart) hold theirs meanwhile and are served.
    Once every socket has completed or closed, the server holds 0 bytes."""
    server = await serve(max_incomplete_bytes_per_address=100_000)
    held = held_input(server)

    def address(name: str) -> dict[str, Any]:
        if apart == "source-address":
            return {"source": {"a": "127.0.0.1", "b": "127.0.0.2"}[name]}
        return {"headers": {"X-Forwarded-For": {"a": "203.0.113.1", "b": "203.0.113.2"}[name]}}

    counted_as = {"a": "127.0.0.1", "b": "127.0.0.2"} if apart == "source-address" else {"a": "203.0.113.1", "b": "203.0.113.2"}
    frames = [masked(TEXT, echo_command(60_000, n)) for n in range(9)]
    a = [await subscribed(server.port, **address("a")) for _ in range(6)]
    b = [await subscribed(server.port, **address("b")) for _ in range(3)]
    closed: list[tuple[int, bytes]] = []
    try:
        for n, client in enumerate(a):
            await send(client, frames[n][:30_000])
            if n < 3:
                await holds_more(held, counted_as["a"], than=n * 30_000 + 29_000)
            else:
                code, reason, _ = await closed_with(client)
                closed.append((code, reason))
        assert closed == [(1008, b"Too much incomplete input from this address")] * 3
        assert held.held(counted_as["a"]) <= 100_000
        for n, client in enumerate(b, start=6):
            await send(client, frames[n][:30_000])
        await holds_more(held, counted_as["b"], than=3 * 29_000)
        for n, client in [*enumerate(a[:3]), *enumerate(b, start=6)]:
            await send(client, frames[n][30_000:])
            assert await echoed(client) == n
        assert held.held() == 0
        await send(a[0], frames[0][:30_000])  # and again, this time closed by the client
        await eventually(lambda: held.held() > 0)
    finally:
        for client in a + b:
            client.close()
    await eventually(lambda: held.held() == 0)
    assert (await scrape(server))[BUDGET] == 3
    over = [r for r in caplog.records if r.levelno == logging.WARNING and "max_incomplete_bytes_per_address" in r.getMessage()]
    assert len(over) == 3 and all(counted_as["a"] in r.getMessage() for r in over)


async def test_clients_doing_what_browsers_do_never_meet_either_limit(serve: ServerFactory) -> None:
    """Five clients of one address (a real WebSocket client library) subscribing, sending small
    commands and each a 900 kB one, for 1.5 s, past a deadline of 1 s: no socket is closed, no
    limit is hit, nothing is held at the end."""
    server = await serve(incomplete_timeout=1.0)

    async def browse(n: int) -> list[Any]:
        client = await server.client()
        await client.subscribe(ROOM)
        answers = []
        for i in range(10):
            await client.perform(ROOM, "echo", n=i, pad="x" * (900_000 if i == 5 else 20))
            answers.append((await client.recv(timeout=5))["message"]["n"])
            await asyncio.sleep(0.15)
        await client.close()
        return answers

    assert await asyncio.gather(*(browse(n) for n in range(5))) == [list(range(10))] * 5
    metrics = await scrape(server)
    assert (metrics[TIMEOUT], metrics[BUDGET]) == (0, 0)
    await eventually(lambda: held_input(server).held() == 0)


async def test_no_deadline_and_no_budget_at_zero(serve: ServerFactory) -> None:
    """With both at 0 a partial frame may wait, and nothing is counted."""
    server = await serve(incomplete_timeout=0, max_incomplete_bytes_per_address=0)
    client = await subscribed(server.port)
    frame = masked(TEXT, echo_command(100_000, 7))
    try:
        await send(client, frame[:60_000])
        await asyncio.sleep(0.3)
        assert held_input(server).held() == 0
        await send(client, frame[60_000:])
        assert await echoed(client) == 7
    finally:
        client.close()
