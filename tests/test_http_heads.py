"""Every request head is bounded in bytes and in time, with httptools and with h11 alike: an endless
header line gets 431 and a close, a head left half-sent (or never begun) is closed after
``request_head_timeout``, and the server's memory does not follow what a client sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cable_server import Settings
from cable_server.uvicorn_http import guarded_protocol
from protocol_tests.client import assert_usable

from .conftest import RunningServer, start_server
from .fixture_app import create_app
from .processes import Launcher, rss_kib

HALF_UPGRADE = b"GET /cable HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"


@pytest.fixture(params=[HttpToolsProtocol, H11Protocol], ids=["httptools", "h11"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    settings = Settings(ping_interval=30, shutdown_timeout=1.0, request_head_timeout=0.5, max_request_head_bytes=32 * 1024)
    cable = create_app(settings)
    running = await start_server(cable, http=guarded_protocol(32 * 1024, 0.5, request.param))
    yield running
    await running.stop()


async def read_all(reader: asyncio.StreamReader, seconds: float = 3.0) -> bytes:
    """What the server sends until it closes; fails if it does not close within ``seconds``."""
    async with asyncio.timeout(seconds):
        return await reader.read()


async def push_header_line(port: int, mebibytes: float, prefix: bytes = b"") -> bytes:
    """Send a header line of ``mebibytes`` with no end (after ``prefix``); returns the server's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.ensure_future(read_all(reader, 10.0))
    writer.write(prefix + b"GET /cable HTTP/1.1\r\nX-Junk: ")
    chunk = b"x" * 65536
    try:
        for _ in range(int(mebibytes * 16)):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass  # the server closed while we were still sending
    try:
        return await answer
    finally:
        writer.close()


@pytest.mark.parametrize("prefix", [b"", b"\r\n\r\n", b"\n\n\r\n"], ids=["plain", "after-blank-lines", "after-bare-lfs"])
async def test_an_endless_header_line_gets_431_and_a_close(server: RunningServer, prefix: bytes) -> None:
    """A header line that never ends: 431 once past the limit, then the socket closes; others go on.
    Blank lines before the request line (which parsers skip) end no head."""
    answer = await push_header_line(server.port, 4, prefix)
    assert answer.startswith(b"HTTP/1.1 431 ") or answer.startswith(b"HTTP/1.1 400 "), answer[:60]
    await assert_usable(await server.client("?user=after"))


async def test_half_sent_and_silent_requests_are_closed_after_the_head_timeout(server: RunningServer) -> None:
    """100 upgrade requests stopped before their blank line (half of them after empty lines, which
    parsers skip) and 100 sockets that never sent a byte:
    every one is closed by the server within the timeout (0.5 s here), none answered."""
    sockets = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(200)]
    for n, (_, writer) in enumerate(sockets[:100]):
        writer.write(b"\r\n\r\n" * (n % 2) + HALF_UPGRADE)  # half of them after blank lines
    answers = await asyncio.gather(*(read_all(reader, 3.0) for reader, _ in sockets))  # each one closed
    assert all(answer == b"" or answer.startswith(b"HTTP/1.1 400 ") for answer in answers)  # h11: no empty lines
    assert answers[100:] == [b""] * 100
    for _, writer in sockets:
        writer.close()
    await assert_usable(await server.client("?user=after"))


async def test_keep_alive_requests_are_served_and_a_late_second_head_is_closed(server: RunningServer) -> None:
    """Several requests on one keep-alive connection, each head sent at once, are all answered after
    the timeout has passed; a second head left half-sent is closed."""
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        for _ in range(3):
            assert (await http.get("/health")).status_code == 200
            await asyncio.sleep(0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
    await reader.readexactly(len(b'{"status":"ok"}'))
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and then nothing
    assert await read_all(reader) == b""
    writer.close()


async def test_cable_servers_memory_does_not_follow_a_200_mib_header(launch: Launcher) -> None:
    """`cable-server` (httptools installed by the speedups extra): a client pushing a 200 MiB header
    line is cut at the limit; the server's RSS grows by less than 8 MiB (it grew by 318 MB before)."""
    server = await launch("tests.fixture_app:create_app", "--log-level", "warning")
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.origin}/health")).status_code == 200
    before = rss_kib(server.process.pid)
    assert (await push_header_line(server.port, 200)).startswith(b"HTTP/1.1 431 ")
    assert rss_kib(server.process.pid) - before < 8 * 1024


async def send_head(port: int, *parts: bytes) -> bytes:
    """Send a request head in ``parts`` (each in one write, a pause between); the server's answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.05)
        return await read_all(reader)
    finally:
        writer.close()


def head_of(size: int) -> bytes:
    """A complete ``GET /health`` head of ``size`` bytes (one big header)."""
    start, end = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: ", b"\r\n\r\n"
    return start + b"x" * (size - len(start) - len(end)) + end


@pytest.mark.parametrize(
    ("size", "reads"), [(40 * 1024, 1), (120 * 1024, 1), (40 * 1024, 2)], ids=["40k-one", "120k-one", "40k-two"]
)
async def test_a_whole_head_over_the_limit_gets_431_however_it_is_read(server: RunningServer, size: int, reads: int) -> None:
    """Every byte of a head counts, the first read's too: a complete head over the limit arriving in
    one read (or begun in the first) was parsed and served with httptools."""
    head = head_of(size)
    cut = len(head) // reads
    answer = await send_head(server.port, *(head[i * cut : (i + 1) * cut if i < reads - 1 else None] for i in range(reads)))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:60]


async def test_a_whole_head_under_the_limit_is_served(server: RunningServer) -> None:
    answer = await send_head(server.port, head_of(30 * 1024))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:60]


async def test_a_body_written_with_its_head_does_not_count_as_head() -> None:
    """httptools: a head within the limit followed in the same read by a body far over it (an app
    server's large broadcast, written at once) is served; only the head is bounded."""
    cable = create_app(Settings(ping_interval=30, shutdown_timeout=1.0, broadcast_secret="s3cret"))
    running = await start_server(cable, http=guarded_protocol(32 * 1024, 0.5, HttpToolsProtocol))
    try:
        body = json.dumps({"stream": "big", "data": "x" * 200_000}).encode()
        head = b"POST /_broadcast HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n"
        answer = await send_head(running.port, head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    finally:
        await running.stop()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:60]


@pytest.mark.parametrize(
    "first",
    [
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789",
    ],
    ids=["pipelined-get", "after-an-unread-body"],
)
async def test_a_second_head_in_the_same_read_is_bounded_too(server: RunningServer, first: bytes) -> None:
    """A complete request and the start of an endless second head sent together: the second is
    bounded like any head (it grew the server by 120 MB before)."""
    answer = await push_header_line(server.port, 4, first)
    assert b"HTTP/1.1 431 " in answer or b"HTTP/1.1 400 " in answer, answer[:200]


async def test_endless_chunked_trailers_are_bounded(server: RunningServer) -> None:
    """Trailers after a chunked body count with the head (an endless stream of them took 1.2 GB)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    answer = asyncio.ensure_future(read_all(reader, 10.0))
    writer.write(b"POST /health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n")
    try:
        for _ in range(4 * 16):
            writer.write(b"X-A: b\r\n" * 8192)
            await writer.drain()
    except ConnectionError:
        pass
    try:
        data = await answer
    finally:
        writer.close()
    assert b"HTTP/1.1 431 " in data or b"HTTP/1.1 400 " in data or data.startswith(b"HTTP/1.1 200 "), data[:200]
    await assert_usable(await server.client("?user=after"))
