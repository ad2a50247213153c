"""subscribe / unsubscribe: confirmations, rejections, verbatim identifiers, cleanup."""

from __future__ import annotations

import pytest

from protocol_tests.client import ident

from .conftest import RunningServer, ServerFactory

pytestmark = pytest.mark.both_backends  # every case also runs on the Redis pub/sub


async def test_confirmation_echoes_the_identifier_byte_for_byte(server: RunningServer) -> None:
    """confirm_subscription carries the client's identifier string, escaped as a JSON string."""
    client = await server.client()
    i = ident("EchoChannel", room="r1")
    await client.send({"command": "subscribe", "identifier": i})
    assert await client.recv_raw() == (
        '{"identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"r1\\"}","type":"confirm_subscription"}'
    )


async def test_identifier_variants_are_distinct_subscriptions(server: RunningServer) -> None:
    """Key order, whitespace and unicode make distinct subscriptions, each echoed verbatim."""
    client = await server.client()
    variants = [
        '{"channel":"EchoChannel","room":"k"}',
        '{"room":"k","channel":"EchoChannel"}',
        '{ "channel" : "EchoChannel", "room" : "k" }',
        '{"channel":"EchoChannel","room":"k","x":"é ☃"}',
    ]
    for variant in variants:
        await client.subscribe(variant)
    await server.cable.broadcast("echo_k", {"n": 1})
    received = [await client.recv() for _ in variants]
    assert sorted(r["identifier"] for r in received) == sorted(variants)
    assert all(r["message"] == {"n": 1} for r in received)


async def test_duplicate_subscribes_get_one_confirmation(server: RunningServer) -> None:
    """The same subscribe three times is confirmed once; the rest are ignored."""
    client = await server.client()
    i = ident("EchoChannel", room="dup")
    for _ in range(3):
        await client.send({"command": "subscribe", "identifier": i})
    assert await client.recv() == {"identifier": i, "type": "confirm_subscription"}
    await client.expect_silence(0.4)
    await server.cable.broadcast("echo_dup", "once")
    assert await client.recv() == {"identifier": i, "message": "once"}
    await client.expect_silence(0.2)


async def test_pipelined_subscribes_are_confirmed_in_order(server: RunningServer) -> None:
    """Subscribes sent back to back are confirmed in the order sent."""
    client = await server.client()
    identifiers = [ident("EchoChannel", room=f"p{n}") for n in range(20)]
    for i in identifiers:
        await client.send({"command": "subscribe", "identifier": i})
    assert [(await client.recv())["identifier"] for _ in identifiers] == identifiers


async def test_rejection_frees_the_identifier(server: RunningServer) -> None:
    """reject() answers reject_subscription, and the same subscribe again is rejected again."""
    client = await server.client()
    i = ident("RejectChannel", room="q")
    for _ in range(2):
        await client.send({"command": "subscribe", "identifier": i})
        assert await client.recv_raw() == (
            '{"identifier":"{\\"channel\\":\\"RejectChannel\\",\\"room\\":\\"q\\"}","type":"reject_subscription"}'
        )


async def test_rejected_subscription_keeps_no_stream(server: RunningServer) -> None:
    """A stream opened before reject() is closed: nothing is delivered and the stream is gone."""
    client = await server.client()
    await client.send({"command": "subscribe", "identifier": ident("StreamThenRejectChannel")})
    assert (await client.recv())["type"] == "reject_subscription"
    await server.cable.broadcast("rejected_stream", {"leak": True})
    await client.expect_silence(0.3)
    assert "rejected_stream" not in server.cable.router


async def test_transmissions_in_subscribed_precede_the_confirmation(server: RunningServer) -> None:
    """Frames transmitted inside subscribed reach the client before confirm_subscription."""
    client = await server.client()
    i = ident("TransmitInSubscribedChannel")
    await client.send({"command": "subscribe", "identifier": i})
    assert await client.recv() == {"identifier": i, "message": {"hello": "from subscribed"}}
    assert await client.recv() == {"identifier": i, "message": "world"}
    assert await client.recv() == {"identifier": i, "type": "confirm_subscription"}


async def test_exception_in_subscribed_rejects_and_keeps_nothing(server: RunningServer) -> None:
    """subscribed raising: reject_subscription, and no half-alive subscription answers messages."""
    client = await server.client()
    i = ident("RaiseInSubscribedChannel")
    await client.send({"command": "subscribe", "identifier": i})
    assert await client.recv() == {"identifier": i, "type": "reject_subscription"}
    await client.perform(i, "echo", x=1)
    await client.expect_silence(0.3)


async def test_exception_in_subscribed_is_silent_when_rails_exact(serve: ServerFactory) -> None:
    """With rails_exact, a raising subscribed gets no answer (Rails' behaviour)."""
    client = await (await serve(rails_exact=True)).client()
    await client.send({"command": "subscribe", "identifier": ident("RaiseInSubscribedChannel")})
    await client.expect_silence(0.4)


async def test_unknown_channel_is_rejected(server: RunningServer) -> None:
    """An unknown channel is rejected so the client stops retrying; the connection stays usable."""
    client = await server.client()
    for name in ("NoSuchChannel", "ActionCable::Channel::Base", "String", "Channel"):
        i = ident(name)
        await client.send({"command": "subscribe", "identifier": i})
        assert await client.recv() == {"identifier": i, "type": "reject_subscription"}
    await client.subscribe(ident("EchoChannel"))


async def test_unknown_channel_is_silent_when_rails_exact(serve: ServerFactory) -> None:
    """With rails_exact, an unknown channel gets no answer at all, as in Rails."""
    client = await (await serve(rails_exact=True)).client()
    await client.send({"command": "subscribe", "identifier": ident("NoSuchChannel")})
    await client.expect_silence(0.4)
    await client.subscribe(ident("EchoChannel"))


@pytest.mark.parametrize(
    "frame",
    [
        {"command": "subscribe"},
        {"command": "subscribe", "identifier": "EchoChannel"},
        {"command": "subscribe", "identifier": {"channel": "EchoChannel"}},
        {"command": "subscribe", "identifier": '{"room":"x"}'},
        {"command": "subscribe", "identifier": '{"channel":7}'},
        {"command": "subscribe", "identifier": "[1]"},
    ],
)
async def test_malformed_identifiers_are_ignored(server: RunningServer, frame: dict[str, object]) -> None:
    """A subscribe whose identifier is missing, not JSON, not an object or has no channel gets no answer."""
    client = await server.client()
    await client.send(frame)
    await client.expect_silence(0.3)
    await client.subscribe(ident("EchoChannel"))


async def test_unsubscribe_is_not_acknowledged_and_stops_delivery(server: RunningServer) -> None:
    """After unsubscribe: no ack, no broadcasts, no actions; others on the stream still receive."""
    client, other = await server.client(), await server.client()
    i = ident("EchoChannel", room="u")
    await client.subscribe(i)
    await other.subscribe(i)
    await client.unsubscribe(i)
    await client.expect_silence(0.3)
    await server.cable.broadcast("echo_u", "after")
    assert await other.recv() == {"identifier": i, "message": "after"}
    await client.perform(i, "echo", x=1)
    await client.expect_silence(0.3)


async def test_unsubscribe_unknown_identifier_is_ignored(server: RunningServer) -> None:
    """Unsubscribing from something never subscribed gets no answer and breaks nothing."""
    client = await server.client()
    await client.unsubscribe(ident("EchoChannel", room="never"))
    await client.send({"command": "unsubscribe"})
    await client.expect_silence(0.3)
    await client.subscribe(ident("EchoChannel"))


async def test_resubscribe_after_unsubscribe_is_confirmed_afresh(server: RunningServer) -> None:
    """Unsubscribe then subscribe with the same identifier gets a new confirmation."""
    client = await server.client()
    i = ident("EchoChannel", room="again")
    await client.subscribe(i)
    await client.unsubscribe(i)
    await client.subscribe(i)
    await server.cable.broadcast("echo_again", 1)
    assert await client.recv() == {"identifier": i, "message": 1}


async def test_last_unsubscribe_releases_the_stream(server: RunningServer) -> None:
    """A stream is subscribed in pub/sub while someone listens, and released after the last leaves."""
    a, b = await server.client(), await server.client()
    i = ident("EchoChannel", room="rc")
    await a.subscribe(i)
    await b.subscribe(ident("EchoChannel", room="rc", v=2))
    assert "echo_rc" in server.cable.router
    await a.unsubscribe(i)
    await a.expect_silence(0.1)
    assert "echo_rc" in server.cable.router
    await b.close()
    await a.expect_silence(0.3)
    assert "echo_rc" not in server.cable.router


async def test_stream_for_uses_the_models_broadcasting(server: RunningServer) -> None:
    """stream_for(model) listens to <channel_name>:<to_gid_param>; broadcast_to reaches it."""
    from .fixture_app import Room, RoomChannel

    client = await server.client()
    i = ident("RoomChannel", id=7)
    await client.subscribe(i)
    assert RoomChannel.broadcasting_for(Room(7)) == "room:room-7"
    await RoomChannel.broadcast_to(Room(7), {"to": "room 7"})
    await server.cable.broadcast("room:room-7", {"to": "again"})
    assert [(await client.recv())["message"] for _ in range(2)] == [{"to": "room 7"}, {"to": "again"}]
    await client.send({"command": "subscribe", "identifier": ident("RoomChannel")})
    assert (await client.recv())["type"] == "reject_subscription"
