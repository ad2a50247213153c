"""message / perform: action dispatch, receive, rescue handlers, ordering, bad input."""

from __future__ import annotations

import json

import pytest

from protocol_tests.client import CableClient, ident

from .conftest import RunningServer

pytestmark = pytest.mark.both_backends  # every case also runs on the Redis pub/sub

ECHO = ident("EchoChannel", room="a")


@pytest.fixture
async def alice(server: RunningServer) -> CableClient:
    client = await server.client("?user=alice")
    await client.subscribe(ECHO)
    return client


async def test_action_output_is_activesupport_json_byte_for_byte(alice: CableClient) -> None:
    """<, > and & and U+2028 are escaped, é stays raw, the decoded data includes "action"."""
    await alice.send({"command": "message", "identifier": ECHO, "data": '{"msg":"<hi> & \\u2028 é","action":"echo"}'})
    expected = '{"identifier":' + json.dumps(ECHO) + ',"message":{"msg":"\\u003chi\\u003e \\u0026 \\u2028 é","action":"echo"}}'
    assert await alice.recv_raw() == expected


@pytest.mark.parametrize("data", [{"x": 1}, {"x": 1, "action": ""}, {"x": 1, "action": None}])
async def test_message_without_action_goes_to_receive(alice: CableClient, data: dict[str, object]) -> None:
    """No (or an empty) action calls receive(data) with the whole decoded data."""
    await alice.send({"command": "message", "identifier": ECHO, "data": json.dumps(data)})
    assert (await alice.recv())["message"] == {"received": data}


async def test_action_without_parameters_is_called_without_data(alice: CableClient) -> None:
    """An action taking no argument is called without the data; identifiers come from the connection."""
    await alice.perform(ECHO, "ping_user", current_user="mallory")
    assert (await alice.recv())["message"] == {"user": "alice"}


@pytest.mark.parametrize(
    "action",
    ["nonexistent", "subscribed", "unsubscribed", "transmit", "stream_from", "reject", "_private", "__init__", "report"],
)
async def test_only_public_channel_methods_are_actions(alice: CableClient, action: str) -> None:
    """Unknown actions, hooks, base-class API, private methods and rescue handlers are not callable."""
    await alice.perform(ECHO, action)
    await alice.expect_silence(0.3)
    await alice.perform(ECHO, "echo", ok=True)
    assert (await alice.recv())["message"] == {"ok": True, "action": "echo"}


async def test_transmit_sends_every_json_type(alice: CableClient) -> None:
    """transmit of string, array, number, null, boolean and float arrive as those JSON values."""
    await alice.perform(ECHO, "transmit_variants")
    frames = [await alice.recv_raw() for _ in range(6)]
    prefix = '{"identifier":' + json.dumps(ECHO) + ',"message":'
    assert frames == [
        prefix + '"just a string"}',
        prefix + '[1,"two",{"three":3}]}',
        prefix + "42}",
        prefix + "null}",
        prefix + "true}",
        prefix + "2.5}",
    ]


async def test_unhandled_exception_in_action_is_silent_and_harmless(alice: CableClient) -> None:
    """An action that raises sends nothing and the connection keeps working."""
    await alice.perform(ECHO, "boom")
    await alice.expect_silence(0.3)
    await alice.perform(ECHO, "echo", after="boom")
    assert (await alice.recv())["message"] == {"after": "boom", "action": "echo"}


async def test_rescue_from_turns_an_exception_into_a_transmission(alice: CableClient) -> None:
    """A rescue_from handler receives the exception and can transmit an error."""
    await alice.perform(ECHO, "boom_handled")
    assert (await alice.recv())["message"] == {"error": "handled boom"}


async def test_commands_of_one_connection_run_in_order(alice: CableClient) -> None:
    """A slow action finishes before the next command runs (Rails' thread pool may reorder)."""
    await alice.perform(ECHO, "slow", seconds=0.3)
    await alice.perform(ECHO, "fast")
    assert [(await alice.recv())["message"] for _ in range(2)] == [{"slow": "done"}, {"fast": "done"}]


@pytest.mark.parametrize(
    "frame",
    [
        {"command": "message", "identifier": ECHO, "data": {"action": "echo"}},
        {"command": "message", "identifier": ECHO},
        {"command": "message", "identifier": ECHO, "data": '"str"'},
        {"command": "message", "identifier": ECHO, "data": "[1]"},
        {"command": "message", "identifier": ECHO, "data": "{nope"},
        {"command": "message", "identifier": ident("EchoChannel", room="unknown"), "data": '{"action":"echo"}'},
        {"command": "message", "data": '{"action":"echo"}'},
    ],
)
async def test_bad_messages_are_ignored(alice: CableClient, frame: dict[str, object]) -> None:
    """Data that is not a JSON object string, or an unknown identifier, gets no answer."""
    await alice.send(frame)
    await alice.expect_silence(0.3)
    await alice.perform(ECHO, "echo", ok=1)
    assert (await alice.recv())["message"] == {"ok": 1, "action": "echo"}
