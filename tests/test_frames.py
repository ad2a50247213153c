"""Frames that are not commands, and WebSocket-level behaviour."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from protocol_tests.client import CableClient, closed_with, ident

from .conftest import RunningServer, ServerFactory

ECHO = ident("EchoChannel", room="f")


@pytest.fixture
async def client(server: RunningServer) -> CableClient:
    client = await server.client()
    await client.subscribe(ECHO)
    return client


async def assert_alive(client: CableClient) -> None:
    await client.perform(ECHO, "echo", alive=True)
    assert (await client.recv())["message"] == {"alive": True, "action": "echo"}


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "[1,2]",
        '"hello"',
        "42",
        "",
        '{"command":"foo","identifier":"x"}',
        '{"identifier":"x"}',
        '{"command":"pong"}',
        '{"command":"history","identifier":"x","history":{"since":1}}',
        '{"command":"whisper","identifier":"x","data":{"typing":true}}',
        '{"command":"subscribe","identifier":"{\\"channel\\":\\"EchoChannel\\"}"',
        "[" * 100_000,
        '{"a":' * 5000 + "1" + "}" * 5000,
        '{"command":"subscribe","identifier":"{\\"channel\\":\\"EchoChannel\\",\\"n\\":NaN}"}',
    ],
)
async def test_frames_that_are_not_commands_are_ignored(client: CableClient, text: str) -> None:
    """Invalid JSON, non-objects, unknown or AnyCable-only commands and absurd nesting get no answer."""
    await client.send(text)
    await client.expect_silence(0.3)
    await assert_alive(client)


async def test_binary_frames_are_ignored(client: CableClient) -> None:
    """A binary frame, even one holding a valid subscribe, is ignored as in Rails."""
    await client.ws.send(b'{"command":"subscribe","identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"bin\\"}"}')
    await client.expect_silence(0.3)
    await assert_alive(client)


async def test_large_and_fragmented_frames_are_handled(client: CableClient) -> None:
    """A payload just under the 1 MiB frame limit round-trips; a command split over many fragments is reassembled."""
    big = "x" * (1024 * 1024 - 1024)
    await client.perform(ECHO, "echo", big=big)
    assert (await client.recv(timeout=10))["message"]["big"] == big
    frame = '{"command":"message","identifier":' + json.dumps(ECHO) + ',"data":"{\\"action\\":\\"echo\\",\\"f\\":1}"}'
    await client.ws.send([frame[i : i + 7] for i in range(0, len(frame), 7)])
    assert (await client.recv())["message"] == {"action": "echo", "f": 1}


async def test_a_frame_over_the_size_limit_closes_only_that_connection(server: RunningServer, client: CableClient) -> None:
    """One byte over max_frame_bytes (1 MiB): that connection is closed with 1009; another one carries on."""
    bystander = await server.client()
    await bystander.subscribe(ECHO)
    frame = '{"command":"message","identifier":' + json.dumps(ECHO) + ',"data":"' + "x" * (1 << 20) + '"}'
    await client.ws.send(frame[: (1 << 20) + 1])
    assert await closed_with(client) == 1009
    await assert_alive(bystander)


async def test_the_frame_size_limit_is_a_setting(serve: ServerFactory) -> None:
    server = await serve(max_frame_bytes=4 << 20)
    client = await server.client()
    await client.subscribe(ECHO)
    big = "x" * (2 << 20)
    await client.perform(ECHO, "echo", big=big)
    assert (await client.recv(timeout=10))["message"]["big"] == big


@pytest.mark.parametrize("fragments", [[b'{"command":"\xff"}'], [b'{"command":"\xc3', b'\xa9\xff"}']], ids=["one", "fragmented"])
async def test_a_text_message_that_is_not_utf8_closes_with_1007_and_one_info_line(
    server: RunningServer, caplog: pytest.LogCaptureFixture, fragments: list[bytes]
) -> None:
    """Invalid UTF-8 (also across fragments): close 1007 with Rails' reason, one info record on our
    logger, nothing at ERROR (uvicorn logged a traceback per frame); other connections carry on."""
    caplog.set_level(logging.INFO)
    bystander = await server.client()
    await bystander.subscribe(ECHO)
    client = await server.client()
    await client.ws.send(fragments if len(fragments) > 1 else fragments[0], text=True)
    assert await closed_with(client) == 1007
    close = client.ws.protocol.close_rcvd
    assert close is not None and close.reason == "Could not decode a text frame as UTF-8"
    await assert_alive(bystander)
    assert [r.levelno for r in caplog.records if "not UTF-8" in r.getMessage()] == [logging.INFO]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_client_close_code_and_reason_are_echoed(client: CableClient) -> None:
    """A client closing with 4001 'bye' gets 4001 'bye' back."""
    await client.ws.close(4001, "bye")
    close = client.ws.protocol.close_rcvd
    assert close is not None and (close.code, close.reason) == (4001, "bye")


async def test_websocket_ping_is_answered_with_pong(client: CableClient) -> None:
    """A WebSocket-level ping gets a pong with the same payload."""
    pong = await client.ws.ping(b"hello")
    latency = await asyncio.wait_for(pong, 3)
    assert latency >= 0
