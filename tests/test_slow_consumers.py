"""A client that stops reading, among a thousand that keep up: it is cut off, they are not held back."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import time

import pytest

from protocol_tests.client import ident

from .conftest import RunningServer, ServerFactory
from .rawws import CLOSE, TEXT, RawCable

BURST = ident("EchoChannel", room="burst")
SUBSCRIBERS = 1_000
BROADCASTS = 60
PAD = "x" * 1_500
TOO_SLOW = b'{"type":"disconnect","reason":"too_slow","reconnect":true}'


def shrink_server_side_send_buffer(client: socket.socket, size: int) -> None:
    """Give the server's end of ``client``'s connection a small kernel send buffer.

    On loopback Linux lets one stalled socket's kernel buffers grow to megabytes before the
    server's own buffer (``max_send_buffer``) starts to fill; a thousand sockets times that is
    more than a test should push. The server runs in this process, so its socket is one of our
    file descriptors: find the one whose peer is ``client`` and set ``SO_SNDBUF`` on it.
    """
    wanted = client.getsockname()
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            candidate = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        with candidate:
            try:
                if candidate.type == socket.SOCK_STREAM and candidate.getpeername() == wanted:
                    candidate.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)
                    return
            except OSError:
                continue
    raise AssertionError("the server's end of the connection was not found")


async def subscriber(port: int) -> RawCable:
    client = await RawCable.connect(port)
    await client.subscribe(BURST)
    return client


async def received(client: RawCable, count: int = BROADCASTS) -> tuple[list[int], float]:
    """The ``n`` of ``count`` broadcasts, and when the last arrived."""
    numbers = []
    while len(numbers) < count:
        frame = await client.recv()
        if frame.get("identifier") == BURST:
            numbers.append(frame["message"]["n"])
    return numbers, time.monotonic()


async def stall(port: int) -> RawCable:
    """A subscriber that reads its confirmation, then nothing: a small receive buffer on its side,
    a small send buffer on the server's (see :func:`shrink_server_side_send_buffer`)."""
    stalled = await RawCable.connect(port, rcvbuf=16384)
    shrink_server_side_send_buffer(stalled.sock, 8192)
    await stalled.subscribe(BURST)
    return stalled


async def burst(server: RunningServer, count: int) -> None:
    for n in range(count):
        await server.cable.broadcast("echo_burst", {"n": n, "pad": PAD})
        await asyncio.sleep(0)


async def gone(server: RunningServer, sessions: int, within: float) -> None:
    deadline = time.monotonic() + within
    while len(server.cable.sessions) != sessions:
        assert time.monotonic() < deadline, "the stalled client's session is still there"
        await asyncio.sleep(0.02)


def numbers_then_too_slow(frames: list[tuple[int, bytes]]) -> list[int]:
    """The ``n`` of the broadcasts before the too_slow frame, which must be the last text frame."""
    texts = [payload for opcode, payload in frames if opcode == TEXT]
    assert texts[-1] == TOO_SLOW
    return [json.loads(text)["message"]["n"] for text in texts[:-1] if b'"n":' in text]


async def test_a_client_that_stops_reading_is_cut_off_and_holds_nobody_back(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 subscribers and one that never reads get 60 broadcasts of 1.5 KB: the 1,000 get all of them, in
    order, within seconds; the stalled one is disconnected as too_slow (logged, counted), its session is gone,
    and when it reads at last it finds a prefix of the broadcasts in order, the too_slow frame and a close 1000."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    server = await serve(max_send_buffer=32 * 1024, close_timeout=0.5, ping_interval=30)
    clients: list[RawCable] = []
    for _ in range(SUBSCRIBERS // 100):
        clients += await asyncio.gather(*(subscriber(server.port) for _ in range(100)))
    stalled = await stall(server.port)
    assert len(server.cable.sessions) == SUBSCRIBERS + 1

    readers = [asyncio.ensure_future(received(client)) for client in clients]
    started = time.monotonic()
    await burst(server, BROADCASTS)
    results = await asyncio.wait_for(asyncio.gather(*readers), 60)
    slowest = max(arrived for _, arrived in results) - started
    assert all(numbers == list(range(BROADCASTS)) for numbers, _ in results)
    assert slowest < 20, f"the last subscriber got the burst after {slowest:.1f} s"

    assert server.cable.metrics.slow_disconnects == 1
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING and "client too slow" in r.getMessage()]
    assert warning.__dict__["peer"] == f"127.0.0.1:{stalled.sock.getsockname()[1]}"
    await gone(server, SUBSCRIBERS, within=2)

    frames = await asyncio.wait_for(stalled.read_until_closed(), 10)
    numbers = numbers_then_too_slow(frames)
    assert numbers == list(range(len(numbers))) and 0 < len(numbers) < BROADCASTS
    assert frames[-1] == (CLOSE, (1000).to_bytes(2, "big"))
    for client in [*clients, stalled]:
        client.close()


async def test_a_stalled_client_is_freed_even_when_the_close_cannot_be_written(serve: ServerFactory) -> None:
    """max_send_buffer above the transport's high-water mark (64 KiB): the close frame waits behind data
    the client never reads, so uvicorn never reports the disconnect; the session gives up after
    close_timeout and is gone (its subscriptions too), while another subscriber carries on."""
    server = await serve(max_send_buffer=256 * 1024, close_timeout=0.5, ping_interval=30)
    reader = await subscriber(server.port)
    stalled = await stall(server.port)
    collecting = asyncio.ensure_future(received(reader, 200))
    await burst(server, 200)
    assert server.cable.metrics.slow_disconnects == 1
    await gone(server, 1, within=0.5 + 1)
    assert (await asyncio.wait_for(collecting, 10))[0] == list(range(200))
    numbers = numbers_then_too_slow(await asyncio.wait_for(stalled.read_until_closed(), 10))
    assert numbers == list(range(len(numbers)))
    reader.close()
    stalled.close()
