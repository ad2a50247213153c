"""How frames reach the socket: built by hand and written directly, or through ASGI elsewhere.

Under ``cable-server`` (``CableWebSocketProtocol``) a session writes pre-built frames straight
to the transport; under any other ASGI WebSocket server it queues them for ASGI ``send``. Both
paths must put the same frames on the wire, in order, and bound what a client leaves unread.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Generator

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from cable_server import Settings
from cable_server.wsframe import text_frame
from protocol_tests.client import CableClient, ident

from .conftest import RunningServer, start_server
from .fixture_app import create_app

ECHO = ident("EchoChannel", room="t")


def parse_server_frame(data: bytes) -> Frame:
    """Parse ``data`` as a client does: one unmasked frame, nothing left over."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser: Generator[None, None, Frame] = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("incomplete frame")
    assert reader.at_eof
    return frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 1_000_000])
def test_a_text_frame_is_one_final_unmasked_frame_of_any_length(size: int) -> None:
    text = "x" * size
    frame = parse_server_frame(text_frame(text))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, text.encode())


def test_a_text_frame_carries_utf8() -> None:
    text = '{"message":"héllo ✓ 😀"}'
    assert parse_server_frame(text_frame(text)).data.decode() == text


async def start(ws: str) -> RunningServer:
    """The fixture app with our protocol (``cable``) or a stock uvicorn WebSocket implementation."""
    cable = create_app(
        Settings(ping_interval=0.5, shutdown_timeout=1.0, max_send_buffer=64 * 1024, command_burst=1000, close_timeout=1.0)
    )
    return await start_server(cable, ws=None if ws == "cable" else ws)


@pytest.fixture(params=["cable", "websockets-sansio"])
async def any_server(request: pytest.FixtureRequest) -> RunningServer:
    server = await start(request.param)
    yield server  # type: ignore[misc]
    await server.stop()


async def test_broadcasts_and_transmissions_arrive_in_order_on_either_path(any_server: RunningServer) -> None:
    client = await any_server.client("?user=ann")
    await client.subscribe(ECHO)
    for n in range(200):
        await client.perform(ECHO, "shout", payload={"n": n})
    got = [(await client.recv())["message"]["n"] for _ in range(200)]
    assert got == list(range(200))
    await client.close()


@pytest.fixture
async def asgi_server() -> RunningServer:
    server = await start("websockets-sansio")
    yield server  # type: ignore[misc]
    await server.stop()


async def test_through_asgi_a_client_that_stops_reading_is_disconnected_as_too_slow(asgi_server: RunningServer) -> None:
    """64 KiB queued (the setting here): the slow client goes, another keeps receiving.

    (With direct writes the bound is on the transport's buffer: ``test_slow_consumers``.)
    """
    any_server = asgi_server
    reader, writer = await asyncio.open_connection("127.0.0.1", any_server.port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(
        f"GET /cable?user=slow_reader HTTP/1.1\r\nHost: 127.0.0.1:{any_server.port}\r\nOrigin: {any_server.origin}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n".encode()
    )
    await reader.readuntil(b"welcome")
    command = json.dumps({"command": "subscribe", "identifier": ECHO}).encode()
    writer.write(bytes((0x81, 0x80 | len(command))) + b"\0\0\0\0" + command)  # masked with a zero key
    await writer.drain()
    await reader.readuntil(b"confirm_subscription")  # then it never reads again
    watcher = await any_server.client("?user=watcher")
    await watcher.subscribe(ECHO)
    sessions = len(any_server.cable.sessions)

    padding = "p" * 2000
    for n in range(4000):  # ~8 MB to a client that reads nothing (loopback kernel buffers hold a few)
        await any_server.cable.broadcast("echo_t", {"n": n, "padding": padding})
        assert (await watcher.recv(timeout=10))["message"]["n"] == n  # the reading client keeps up
    for _ in range(100):
        if len(any_server.cable.sessions) < sessions:
            break
        await asyncio.sleep(0.05)
    assert len(any_server.cable.sessions) == sessions - 1
    writer.close()
    await watcher.close()


async def test_connections_are_dropped_by_the_kernel_when_the_peer_stops_acknowledging(server: RunningServer) -> None:
    """``dead_peer_timeout`` becomes the socket's TCP_USER_TIMEOUT (milliseconds)."""
    client: CableClient = await server.client("?user=ann")
    protocols = list(server.uvicorn.server_state.connections)
    sockets = [protocol.transport.get_extra_info("socket") for protocol in protocols]  # type: ignore[attr-defined]
    timeouts = {sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) for sock in sockets}
    assert timeouts == {30_000}
    await client.close()


def test_frames_for_texts_in_turn_each_carry_their_own_text() -> None:
    """The last frame is reused only for the very same ``str`` object (a broadcast to many)."""
    first = "".join(["{", '"n":1', "}"])
    same_content = "".join(["{", '"n":1', "}"])
    frames = [text_frame(text) for text in (first, first, "other", same_content, "")]
    assert [parse_server_frame(frame).data for frame in frames] == [b'{"n":1}', b'{"n":1}', b"other", b'{"n":1}', b""]


@pytest.mark.parametrize(
    ("method", "key", "status"),
    [
        ("POST", "dGhlIHNhbXBsZSBub25jZQ==", b"405"),  # not a plain GET: websockets' own parser answers
        ("GET", "short", b"400"),  # a plain GET still goes through websockets' validation
    ],
)
async def test_a_malformed_upgrade_gets_an_http_error_and_the_server_goes_on(
    server: RunningServer, method: str, key: str, status: bytes
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        f"{method} /cable HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nOrigin: {server.origin}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    status_line = await asyncio.wait_for(reader.readline(), 5)
    assert status_line.split()[1] == status
    writer.close()
    client = await server.client("?user=after")
    await client.subscribe(ECHO)
    await client.close()
