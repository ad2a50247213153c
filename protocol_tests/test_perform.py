"""message: action dispatch, receive, protected methods, malformed data, errors and rescue."""

from __future__ import annotations

import json

import pytest

from .client import CableClient, assert_usable, ident
from .conftest import Connect, Target

ECHO = ident("EchoChannel", room="perform")


@pytest.fixture
async def client(connect: Connect) -> CableClient:
    client = await connect("alice")
    await client.subscribe(ECHO)
    return client


async def test_action_output_is_encoded_like_active_support(client: CableClient) -> None:
    """<, >, & and U+2028 are escaped, other non-ASCII stays raw, keys keep their order."""
    data = json.dumps({"msg": "<hi> & \u2028 é", "action": "echo"}, ensure_ascii=False)
    await client.send({"command": "message", "identifier": ECHO, "data": data})
    message = '{"msg":"\\u003chi\\u003e \\u0026 \\u2028 é","action":"echo"}'
    assert await client.recv_raw() == '{"identifier":' + json.dumps(ECHO) + ',"message":' + message + "}"


@pytest.mark.parametrize(
    "action",
    [None, "", "   ", "\t\n", "\u3000\u00a0\u0085", False, [], {}],
    ids=["none", "empty", "spaces", "tab-newline", "unicode-spaces", "false", "empty-array", "empty-object"],
)
async def test_a_blank_action_goes_to_receive(client: CableClient, action: object) -> None:
    """A message whose action is missing or blank (ActiveSupport's blank?) is handed to receive(data)."""
    data = {"x": 1} if action is None else {"x": 1, "action": action}
    await client.send({"command": "message", "identifier": ECHO, "data": json.dumps(data)})
    assert (await client.recv())["message"] == {"received": data}


async def test_an_action_that_is_neither_blank_nor_a_method_is_ignored(client: CableClient) -> None:
    """Not blank to Ruby (U+001C, U+200B), padded, or no string at all: no action, no answer, no receive."""
    for action in ["\x1c", "\u200b", " echo", 0, True, ["echo"]]:
        await client.send({"command": "message", "identifier": ECHO, "data": json.dumps({"action": action})})
    await client.expect_silence()
    await client.perform(ECHO, "ping_user")
    assert (await client.recv())["message"] == {"user": "alice"}


async def test_an_action_without_a_parameter_is_called_without_data(client: CableClient) -> None:
    """ping_user takes no argument and still runs."""
    await client.perform(ECHO, "ping_user")
    assert (await client.recv())["message"] == {"user": "alice"}


@pytest.mark.parametrize(
    "action",
    ["nonexistent", "transmit", "stream_from", "reject", "stop_all_streams", "periodically"],
)
async def test_unknown_and_framework_actions_are_ignored(client: CableClient, action: str) -> None:
    """Actions that are not public methods of the channel itself get no answer and change nothing
    (hooks: test_hooks_performed_as_actions)."""
    await client.perform(ECHO, action, payload="x")
    await client.expect_silence()
    await client.perform(ECHO, "ping_user")
    assert (await client.recv())["message"] == {"user": "alice"}


@pytest.mark.differs("hooks_as_actions")
async def test_hooks_performed_as_actions(connect: Connect, target: Target, rails_way: bool) -> None:
    """perform("subscribed") and perform("unsubscribed"): Rails runs the channel's own hooks (its
    streams doubled, a leave announced by a subscriber that stays); we ignore both."""
    client = await connect("hooker")
    deferred, presence = ident("DeferredChannel", room="hooks"), ident("PresenceChannel", room="hooks")
    hello = {"identifier": deferred, "message": {"hello": "from subscribed"}}
    await client.send({"command": "subscribe", "identifier": deferred})
    assert await client.recv() == hello
    assert await client.recv() == {"identifier": deferred, "type": "confirm_subscription"}
    await client.subscribe(presence)
    await client.perform(deferred, "subscribed")
    await client.perform(presence, "unsubscribed")
    if rails_way:  # the two hooks ran, on Rails' thread pool: in either order
        frames = [await client.recv() for _ in range(2)]
        assert hello in frames and {"identifier": presence, "message": {"left": "hooker"}} in frames
    target.admin("broadcast", {"n": 1}, stream="deferred_a_hooks")
    for _ in range(2 if rails_way else 1):
        assert await client.recv() == {"identifier": deferred, "message": {"n": 1}}
    await client.expect_silence()


@pytest.mark.parametrize(
    "command",
    [
        {"command": "message", "identifier": ECHO, "data": {"action": "echo"}},
        {"command": "message", "identifier": ECHO},
        {"command": "message", "identifier": ECHO, "data": '"str"'},
        {"command": "message", "identifier": ECHO, "data": "{not json"},
        {"command": "message", "identifier": ECHO, "data": "[1,2]"},
        {"command": "message", "identifier": ident("EchoChannel", room="never-subscribed"), "data": '{"action":"echo"}'},
        {"command": "message", "data": '{"action":"echo"}'},
    ],
    ids=["data-object", "no-data", "data-json-string", "data-not-json", "data-array", "unknown-identifier", "no-identifier"],
)
async def test_malformed_messages_are_ignored(client: CableClient, command: dict[str, object]) -> None:
    """A message with bad data or for no subscription gets no answer; the connection stays usable."""
    await client.send(command)
    await client.expect_silence()
    await assert_usable(client)


@pytest.mark.parametrize(
    ("action", "raw"),
    [
        ("transmit_string", '"just a string"'),
        ("transmit_array", '[1,"two",{"three":3}]'),
        ("transmit_number", "42"),
        ("transmit_nil", "null"),
    ],
)
async def test_transmit_of_every_json_type(client: CableClient, action: str, raw: str) -> None:
    """transmit sends strings, arrays, numbers and null as the message, unwrapped."""
    await client.perform(ECHO, action)
    assert await client.recv_raw() == '{"identifier":' + json.dumps(ECHO) + ',"message":' + raw + "}"


async def test_transmits_of_one_action_arrive_in_order(client: CableClient) -> None:
    """Several transmits from one action arrive in the order made."""
    await client.perform(ECHO, "multi", n=20)
    assert [(await client.recv())["message"]["n"] for _ in range(20)] == list(range(1, 21))


async def test_unhandled_exception_in_an_action(connect: Connect) -> None:
    """An action raising an unhandled error answers nothing, and the next action works."""
    client = await connect()
    channel = ident("RaiseChannel", room="x")
    await client.subscribe(channel)
    await client.perform(channel, "boom")
    await client.expect_silence()
    await client.perform(channel, "echo", after="boom")
    assert (await client.recv())["message"] == {"after": "boom", "action": "echo"}


async def test_rescue_handler_turns_an_exception_into_a_frame(connect: Connect) -> None:
    """An error the channel rescues is answered by the handler's transmit."""
    client = await connect()
    channel = ident("RaiseChannel", room="x")
    await client.subscribe(channel)
    await client.perform(channel, "boom_handled")
    assert (await client.recv())["message"] == {"error": "handled boom", "class": "FixtureError"}


async def test_large_message_round_trip(client: CableClient) -> None:
    """A 512 KiB payload is echoed intact."""
    big = "x" * (512 * 1024)
    await client.perform(ECHO, "echo", big=big)
    assert (await client.recv(timeout=10))["message"] == {"big": big, "action": "echo"}


async def test_fragmented_frame_is_reassembled(client: CableClient) -> None:
    """A command split over many WebSocket continuation frames is one command."""
    frame = json.dumps({"command": "message", "identifier": ECHO, "data": json.dumps({"action": "echo", "f": 1})})
    await client.ws.send([frame[i : i + 7] for i in range(0, len(frame), 7)])
    assert (await client.recv())["message"] == {"action": "echo", "f": 1}


@pytest.mark.differs("command_order")
async def test_perform_right_after_subscribe(connect: Connect, rails_way: bool) -> None:
    """subscribe and perform sent back to back: we answer confirm then the action every time."""
    client = await connect()
    channels = [ident("EchoChannel", room=f"order{n}") for n in range(10)]
    for channel in channels:
        await client.send({"command": "subscribe", "identifier": channel})
        await client.perform(channel, "echo", n=channel)
    if rails_way:
        # No order is promised and Rails 7.1+ may drop the message: only the confirmations are certain.
        confirms: set[str] = set()
        while confirms != set(channels):
            frame = await client.recv()
            if frame.get("type") == "confirm_subscription":
                confirms.add(frame["identifier"])
        assert confirms == set(channels)
    else:
        for channel in channels:
            assert await client.recv() == {"identifier": channel, "type": "confirm_subscription"}
            assert await client.recv() == {"identifier": channel, "message": {"n": channel, "action": "echo"}}
