"""subscribe: confirmations, verbatim identifiers, duplicates, rejections, malformed identifiers."""

from __future__ import annotations

import json

import pytest

from .client import assert_usable, ident
from .conftest import Connect, Target


def confirm(identifier: str) -> str:
    return json.dumps({"identifier": identifier, "type": "confirm_subscription"}, separators=(",", ":"), ensure_ascii=False)


def reject(identifier: str) -> str:
    return json.dumps({"identifier": identifier, "type": "reject_subscription"}, separators=(",", ":"), ensure_ascii=False)


async def test_confirmation_echoes_the_identifier_byte_for_byte(connect: Connect) -> None:
    """confirm_subscription carries the identifier string exactly as sent, JSON-escaped."""
    client = await connect()
    channel = ident("EchoChannel", room="r1")
    await client.send({"command": "subscribe", "identifier": channel})
    assert (
        await client.recv_raw()
        == '{"identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"r1\\"}","type":"confirm_subscription"}'
    )


@pytest.mark.parametrize(
    "identifier",
    [
        '{ "channel" : "EchoChannel", "room" : "spaced" }',
        '{"channel":"EchoChannel","room":"héllo wörld ✓"}',
        '{"channel":"EchoChannel","room":"emoji 😀"}',
        '{"room":"keys-first","channel":"EchoChannel"}',
        '{"channel":"EchoChannel","room":7,"extra":{"nested":[1,2]}}',
    ],
    ids=["spaces", "unicode", "astral", "key-order", "nested-params"],
)
async def test_identifier_variants_are_echoed_verbatim(connect: Connect, identifier: str) -> None:
    """Whitespace, non-ASCII, key order and nested params survive the round trip unchanged."""
    client = await connect()
    await client.send(json.dumps({"command": "subscribe", "identifier": identifier}, ensure_ascii=False))
    assert await client.recv_raw() == confirm(identifier)


async def test_identifier_spellings_are_distinct_subscriptions(connect: Connect, target: Target) -> None:
    """Three spellings of one channel+room: three confirms, and a broadcast reaches each once."""
    client = await connect()
    spellings = [
        '{"channel":"EchoChannel","room":"k"}',
        '{"room":"k","channel":"EchoChannel"}',
        '{ "channel" : "EchoChannel", "room" : "k" }',
    ]
    for identifier in spellings:
        await client.subscribe(identifier)
    target.admin("broadcast", {"x": 1}, stream="echo_k")
    frames = [await client.recv() for _ in spellings]
    assert sorted(frame["identifier"] for frame in frames) == sorted(spellings)
    assert all(frame["message"] == {"x": 1} for frame in frames)
    await client.expect_silence()


async def test_duplicate_subscribe_is_confirmed_once(connect: Connect) -> None:
    """The same subscribe three times: one confirmation, then nothing."""
    client = await connect()
    channel = ident("EchoChannel", room="dup")
    for _ in range(3):
        await client.send({"command": "subscribe", "identifier": channel})
    assert await client.recv_raw() == confirm(channel)
    await client.expect_silence()


async def test_pipelined_subscribes_are_all_confirmed(connect: Connect) -> None:
    """Ten subscribes sent back to back: ten confirmations, one per identifier."""
    client = await connect()
    channels = [ident("EchoChannel", room=f"pipe{n}") for n in range(10)]
    for channel in channels:
        await client.send({"command": "subscribe", "identifier": channel})
    answers = [await client.recv() for _ in channels]
    assert {a["identifier"] for a in answers} == set(channels)
    assert {a["type"] for a in answers} == {"confirm_subscription"}


async def test_rejection_and_retry(connect: Connect) -> None:
    """A rejecting channel answers reject_subscription, and again on a retry (nothing is left stuck)."""
    client = await connect()
    channel = ident("RejectChannel", room="no")
    for _ in range(2):
        await client.send({"command": "subscribe", "identifier": channel})
        assert await client.recv_raw() == reject(channel)


@pytest.mark.differs("rejected_streams")
async def test_rejected_subscription_and_its_stream(connect: Connect, target: Target, rails_way: bool) -> None:
    """A channel that opened a stream and then rejected: we deliver nothing; Rails 6.1 still does."""
    client = await connect()
    channel = ident("RejectChannel", room="leak", stream=True)
    await client.send({"command": "subscribe", "identifier": channel})
    assert await client.recv_raw() == reject(channel)
    target.admin("broadcast", {"leak": True}, stream="reject_leak")
    if rails_way:
        assert await client.recv() == {"identifier": channel, "message": {"leak": True}}
    else:
        await client.expect_silence()


async def test_transmit_in_subscribed_arrives_before_the_confirmation(connect: Connect) -> None:
    """Frames transmitted inside subscribed precede confirm_subscription."""
    client = await connect()
    channel = ident("DeferredChannel", room="d")
    await client.send({"command": "subscribe", "identifier": channel})
    assert await client.recv() == {"identifier": channel, "message": {"hello": "from subscribed"}}
    assert await client.recv_raw() == confirm(channel)


@pytest.mark.parametrize("name", ["::EchoChannel", "Object::EchoChannel", "::Object::Object::EchoChannel"])
async def test_a_channel_named_by_its_constant_path(connect: Connect, name: str) -> None:
    """::EchoChannel and Object::EchoChannel are EchoChannel (safe_constantize); params keep the name as sent."""
    client = await connect()
    channel = ident(name, room="const")
    await client.send({"command": "subscribe", "identifier": channel})
    assert await client.recv_raw() == confirm(channel)
    await client.perform(channel, "params_dump")
    assert await client.recv() == {"identifier": channel, "message": {"channel": name, "room": "const"}}


@pytest.mark.differs("unknown_channel")
@pytest.mark.parametrize("name", ["NoSuchChannel", "String", "Kernel", "::String", "Kernel::EchoChannel"])
async def test_unknown_channel(connect: Connect, rails_way: bool, name: str) -> None:
    """A channel that does not exist (or a constant that is not a channel): Rails is silent, we reject."""
    client = await connect()
    channel = ident(name)
    await client.send({"command": "subscribe", "identifier": channel})
    if rails_way:
        await client.expect_silence()
    else:
        assert await client.recv_raw() == reject(channel)
    await assert_usable(client)


@pytest.mark.differs("base_channel")
async def test_framework_base_class_as_a_channel(connect: Connect, target: Target, rails_way: bool) -> None:
    """ActionCable::Channel::Base is no channel: Rails 6.1 confirms it, 7.0+ are silent, we reject."""
    client = await connect()
    channel = ident("ActionCable::Channel::Base")
    await client.send({"command": "subscribe", "identifier": channel})
    if rails_way:
        assert await client.recv_raw() == confirm(channel)
    elif target.is_rails:
        await client.expect_silence()
    else:
        assert await client.recv_raw() == reject(channel)


@pytest.mark.parametrize(
    "command",
    [
        {"command": "subscribe"},
        {"command": "subscribe", "identifier": "EchoChannel"},
        {"command": "subscribe", "identifier": {"channel": "EchoChannel"}},
        {"command": "subscribe", "identifier": '{"room":"x"}'},
        {"command": "subscribe", "identifier": "[1,2]"},
        {"command": "subscribe", "identifier": ""},
        {"command": "subscribe", "identifier": None},
        {"command": "subscribe", "identifier": 42},
    ],
    ids=["no-identifier", "not-json", "object", "no-channel-key", "array", "empty", "null", "number"],
)
async def test_malformed_identifier_is_ignored(connect: Connect, command: dict[str, object]) -> None:
    """A subscribe whose identifier is missing, not a JSON object string, or lacks channel: no answer."""
    client = await connect()
    await client.send(command)
    await client.expect_silence()
    await assert_usable(client)


@pytest.mark.differs("subscribed_raises")
async def test_exception_in_subscribed(connect: Connect, rails_way: bool) -> None:
    """subscribed raising: Rails says nothing yet keeps the subscription; we reject and keep nothing."""
    client = await connect()
    channel = ident("RaiseOnSubscribeChannel")
    await client.send({"command": "subscribe", "identifier": channel})
    if rails_way:
        await client.expect_silence()
        await client.perform(channel, "echo", alive=True)
        assert await client.recv() == {"identifier": channel, "message": {"alive": True, "action": "echo"}}
    else:
        assert await client.recv_raw() == reject(channel)
        await client.perform(channel, "echo", alive=True)
        await client.expect_silence()
    await assert_usable(client)


async def test_stream_for_a_model_uses_its_global_id(connect: Connect, target: Target) -> None:
    """stream_for(model) listens to <channel_name>:<gid param>, and broadcast_to reaches it."""
    client = await connect()
    channel = ident("StreamForChannel", room="7")
    await client.subscribe(channel)
    await client.perform(channel, "whoami")
    assert (await client.recv())["message"] == {"broadcasting": "stream_for:Z2lkOi8vY2FibGUtcmVmL1Jvb20vNw"}
    target.admin("broadcast", {"via": "admin"}, stream="stream_for:Z2lkOi8vY2FibGUtcmVmL1Jvb20vNw")
    assert (await client.recv())["message"] == {"via": "admin"}
    await client.perform(channel, "broadcast_model", via="broadcast_to")
    assert (await client.recv())["message"] == {"via": "broadcast_to", "action": "broadcast_model"}


async def test_stream_for_a_string_and_for_nothing(connect: Connect) -> None:
    """stream_for a string uses it as is; with neither room nor topic the channel rejects."""
    client = await connect()
    channel = ident("StreamForChannel", topic="news")
    await client.subscribe(channel)
    await client.perform(channel, "whoami")
    assert (await client.recv())["message"] == {"broadcasting": "stream_for:news"}
    empty = ident("StreamForChannel")
    await client.send({"command": "subscribe", "identifier": empty})
    assert await client.recv_raw() == reject(empty)


async def test_params_are_the_decoded_identifier(connect: Connect) -> None:
    """params holds every identifier key, channel included, with JSON types preserved."""
    client = await connect()
    channel = ident("EchoChannel", room="p", n=1.5, flag=True, list=[1, "a"])
    await client.subscribe(channel)
    await client.perform(channel, "params_dump")
    assert (await client.recv())["message"] == {"channel": "EchoChannel", "room": "p", "n": 1.5, "flag": True, "list": [1, "a"]}
