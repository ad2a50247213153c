"""Frames that are not valid commands, and WebSocket-level behaviour (close, ping, binary)."""

from __future__ import annotations

import contextlib

import pytest
from websockets.exceptions import ConnectionClosed

from .client import CableClient, assert_usable, closed_with, ident
from .conftest import Connect


@pytest.fixture
async def client(connect: Connect) -> CableClient:
    return await connect()


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "",
        "[1,2]",
        '"hello"',
        "42",
        "null",
        '{"command":"foo","identifier":"{\\"channel\\":\\"EchoChannel\\"}"}',
        '{"identifier":"{\\"channel\\":\\"EchoChannel\\"}"}',
        '{"command":null}',
        '{"command":["subscribe"]}',
        '{"command":"pong"}',
        '{"command":"history","identifier":"{\\"channel\\":\\"EchoChannel\\"}","history":{"since":0}}',
        '{"command":"whisper","identifier":"{\\"channel\\":\\"EchoChannel\\"}","data":{}}',
        '{"command":"subscribe","identifier":"{\\"channel\\":\\"EchoChannel\\"}"',
    ],
    ids=[
        "not-json",
        "empty",
        "array",
        "string",
        "number",
        "null",
        "unknown-command",
        "no-command",
        "null-command",
        "array-command",
        "anycable-pong",
        "anycable-history",
        "anycable-whisper",
        "truncated",
    ],
)
async def test_frames_that_are_not_commands_are_ignored(client: CableClient, frame: str) -> None:
    """Bad JSON, non-objects, unknown or AnyCable-only commands: no answer, the connection stays usable."""
    await client.send(frame)
    await client.expect_silence()
    await assert_usable(client)


async def test_binary_frames_are_ignored(client: CableClient) -> None:
    """A binary frame, even one holding a valid subscribe, is not a command."""
    await client.ws.send(b'{"command":"subscribe","identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"bin\\"}"}')
    await client.expect_silence()
    await assert_usable(client)


async def test_websocket_ping_is_answered_with_a_pong(client: CableClient) -> None:
    """A WebSocket-level ping gets its pong (the connection's own keepalive, beside ActionCable pings)."""
    pong = await client.ws.ping(b"hello")
    latency = await pong
    assert latency >= 0


async def test_client_close_code_is_echoed(client: CableClient) -> None:
    """A client closing with 4001 "bye" gets the same code back in the server's close frame."""
    await client.ws.close(4001, "bye")
    close = client.ws.protocol.close_rcvd
    assert close is not None
    assert (close.code, close.reason) == (4001, "bye")


async def test_invalid_utf8_text_frame_closes_with_1007(client: CableClient) -> None:
    """A text frame that is not UTF-8 is a WebSocket protocol error: close 1007, with websocket-driver's reason."""
    await client.ws.send(b'{"command":"\xff"}', text=True)
    assert await closed_with(client) == 1007
    close = client.ws.protocol.close_rcvd
    assert close is not None and close.reason == "Could not decode a text frame as UTF-8"


@pytest.mark.differs("frame_size")
async def test_a_frame_over_one_mebibyte(client: CableClient, rails_way: bool) -> None:
    """A 2 MiB command: Rails (up to 64 MiB) runs it; we close with 1009 (max_frame_bytes)."""
    channel = ident("EchoChannel", room="big")
    await client.subscribe(channel)
    big = "x" * (2 << 20)
    if rails_way:
        await client.perform(channel, "echo", big=big)
        assert (await client.recv(timeout=10))["message"] == {"big": big, "action": "echo"}
    else:
        # The close may come while the frame is still being written: it is read off the header.
        with contextlib.suppress(ConnectionClosed):
            await client.perform(channel, "echo", big=big)
        assert await closed_with(client) == 1009
