"""Connection lifecycle: welcome, heartbeat, authentication, server-initiated disconnects."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from protocol_tests.client import closed_with, ident

from .conftest import RunningServer, ServerFactory

pytestmark = pytest.mark.both_backends  # every case also runs on the Redis pub/sub


async def test_welcome_is_the_first_frame_exactly(server: RunningServer) -> None:
    """The first frame is the 18-byte text {"type":"welcome"}."""
    client = await server.client(welcome=False)
    assert await client.recv_raw(pings=True) == '{"type":"welcome"}'


async def test_pings_carry_integer_unix_seconds_at_the_interval(serve: ServerFactory) -> None:
    """After the welcome, {"type":"ping","message":<int seconds>} arrives every ping_interval."""
    running = await serve(ping_interval=0.3)
    client = await running.client()
    started = time.monotonic()
    pings = [await client.recv(pings=True) for _ in range(3)]
    elapsed = time.monotonic() - started
    for ping in pings:
        assert list(ping) == ["type", "message"] and ping["type"] == "ping"
        assert isinstance(ping["message"], int) and abs(ping["message"] - time.time()) < 5
    assert [p["message"] for p in pings] == sorted(p["message"] for p in pings)
    assert 0.5 < elapsed < 1.5


async def test_commands_sent_before_the_welcome_run_after_it(server: RunningServer) -> None:
    """A subscribe sent while connect() is still running is answered after the welcome."""
    client = await server.client("?user=slow", welcome=False)
    i = ident("EchoChannel", room="s")
    await client.send({"command": "subscribe", "identifier": i})
    assert await client.recv_raw(timeout=5) == '{"type":"welcome"}'
    assert await client.recv() == {"identifier": i, "type": "confirm_subscription"}


@pytest.mark.parametrize("how", ["query", "cookie"])
async def test_rejected_connection_gets_unauthorized_then_close_1000(server: RunningServer, how: str) -> None:
    """reject_unauthorized_connection: the unauthorized disconnect frame, no welcome, then close 1000."""
    if how == "query":
        client = await server.client("?user=reject", welcome=False)
    else:
        client = await server.client(welcome=False, headers={"Cookie": "user=reject"})
    assert await client.recv_raw(pings=True) == '{"type":"disconnect","reason":"unauthorized","reconnect":false}'
    assert await closed_with(client) == 1000


async def test_exception_in_connect_closes_1011_instead_of_hanging(server: RunningServer) -> None:
    """An error in connect() closes the socket with 1011 and no frame (Rails would hang it forever)."""
    client = await server.client("?user=raise", welcome=False)
    assert await closed_with(client) == 1011


async def test_server_restart_disconnects_everyone_with_reconnect(server: RunningServer) -> None:
    """restart() sends server_restart (reconnect true), closes 1000, and new clients still connect."""
    clients = [await server.client(f"?user=u{n}") for n in range(3)]
    server.cable.restart()
    for client in clients:
        assert await client.recv_raw() == '{"type":"disconnect","reason":"server_restart","reconnect":true}'
        assert await closed_with(client) == 1000
    fresh = await server.client()
    assert (await fresh.recv(pings=True))["type"] == "ping"


async def test_graceful_shutdown_announces_server_restart(server: RunningServer) -> None:
    """Stopping the server sends server_restart before the socket closes with 1000 (not uvicorn's 1012)."""
    client = await server.client()
    stopping = asyncio.create_task(server.stop())
    assert await client.recv_raw() == '{"type":"disconnect","reason":"server_restart","reconnect":true}'
    assert await closed_with(client) == 1000
    await stopping


@pytest.mark.parametrize("reconnect", [True, False])
async def test_remote_disconnect_by_identifier(server: RunningServer, reconnect: bool) -> None:
    """remote_connections.where(current_user=...).disconnect() closes only that user's connections."""
    alice1, alice2, bob = [await server.client(f"?user={u}") for u in ("alice", "alice", "bob")]
    await server.cable.remote_connections.where(current_user="alice").disconnect(reconnect=reconnect)
    for client in (alice1, alice2):
        frame = json.loads(await client.recv_raw())
        assert frame == {"type": "disconnect", "reason": "remote", "reconnect": reconnect}
        assert await closed_with(client) == 1000
    await bob.subscribe(ident("EchoChannel"))


async def test_rails_6_remote_disconnect_message_defaults_to_reconnect(server: RunningServer) -> None:
    """An internal {"type":"disconnect"} without reconnect (Rails 6.1/7.0) means reconnect true."""
    client = await server.client("?user=carol")
    await server.cable.broadcast("action_cable/carol", {"type": "disconnect"})
    assert await client.recv_raw() == '{"type":"disconnect","reason":"remote","reconnect":true}'


async def test_invalid_internal_message_is_ignored(server: RunningServer) -> None:
    """Garbage on a connection's internal channel is logged and the connection stays."""
    client = await server.client("?user=dave")
    await server.cable.broadcast("action_cable/dave", "not a command")
    await server.cable.broadcast("action_cable/dave", {"type": "bogus"})
    await client.subscribe(ident("EchoChannel"))


async def test_where_refuses_names_that_are_not_identifiers(server: RunningServer) -> None:
    """remote_connections.where() with an unknown identifier name raises instead of matching nobody."""
    with pytest.raises(ValueError, match="not identifiers"):
        server.cable.remote_connections.where(user_id=1)


async def test_closing_runs_unsubscribed_hooks_then_disconnect(server: RunningServer) -> None:
    """When a client goes away, each subscription's unsubscribed runs, then Connection.disconnect."""
    watcher = await server.client("?user=watcher")
    presence = ident("PresenceChannel", id="w")
    await watcher.subscribe(presence)
    await watcher.send({"command": "subscribe", "identifier": ident("EchoChannel")})
    await watcher.recv()
    await watcher.perform(ident("EchoChannel"), "follow", stream="disconnects")

    leaver = await server.client("?user=leaver")
    await leaver.subscribe(ident("PresenceChannel", id=1))
    await leaver.subscribe(ident("PresenceChannel", id=2))
    await leaver.close()
    received = [await watcher.recv() for _ in range(3)]
    left = [r["message"] for r in received if r["identifier"] == presence]
    assert sorted(m["id"] for m in left) == [1, 2] and {m["left"] for m in left} == {"leaver"}
    assert received[-1] == {"identifier": ident("EchoChannel"), "message": {"disconnected": "leaver"}}
    await watcher.perform(ident("EchoChannel"), "echo", still="here")
    assert (await watcher.recv())["message"] == {"still": "here", "action": "echo"}
