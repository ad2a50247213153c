"""AnyCable session recovery (``?sid=``) skips ``connect``, so it is bounded like a credential:
not past the token's ``exp``, not past ``recovery_max_age`` from the original authentication
however often it is chained, and not after a remote disconnect of the identity, even one sent
while the user's socket was closed (through Redis too)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cable_server import CableServer, Settings, TokenAuth, TokenConnection, issue_token
from protocol_tests.client import CableClient, closed_with, ident

from .conftest import RunningServer, ServerFactory
from .fixture_app import EchoChannel, create_app

pytestmark = pytest.mark.both_backends

EXT = ("actioncable-v1-ext-json",)
ECHO = ident("EchoChannel", room="x")
SECRET = "recovery-" + "s" * 40
UNAUTHORIZED = {"type": "disconnect", "reason": "unauthorized", "reconnect": False}


async def ext_connect(server: RunningServer, query: str) -> tuple[CableClient, dict[str, Any]]:
    client = await CableClient.connect(f"{server.url}?{query}", origin=server.origin, subprotocols=EXT, welcome=False)
    return client, await client.recv()


async def closed(server: RunningServer, client: CableClient) -> None:
    """Close ``client`` and wait until the server kept its session for recovery."""
    await client.close()
    async with asyncio.timeout(3):
        while server.cable.sessions:
            await asyncio.sleep(0.01)


async def test_a_session_is_not_recovered_past_its_tokens_expiry(serve: ServerFactory) -> None:
    """A 2 s token: recovered while it is valid (connect does not run), refused once it expired:
    the client must present a fresh token, and without one gets the unauthorized disconnect."""

    class AppConnection(TokenConnection):
        identified_by = ("current_user",)
        token_auth = TokenAuth(secret=SECRET)

    server = await serve(CableServer(connection_class=AppConnection, channels=[EchoChannel], settings=Settings(ping_interval=30)))
    client, welcome = await ext_connect(server, "token=" + issue_token(SECRET, "alice", expires_in=2))
    await closed(server, client)
    client, welcome = await ext_connect(server, f"sid={welcome['sid']}")
    assert welcome["restored"] is True
    await closed(server, client)
    await asyncio.sleep(2.1)
    client, frame = await ext_connect(server, f"sid={welcome['sid']}")
    assert frame == UNAUTHORIZED and await closed_with(client) == 1000


async def test_chained_recoveries_end_at_max_age_from_the_authentication(serve: ServerFactory) -> None:
    """recovery_max_age=1.5: each recovery hands out a new sid, but the clock runs from the connect
    that authenticated the first; after it, ?sid= is a new connection (connect runs)."""
    server = await serve(create_app(Settings(ping_interval=30, recovery_max_age=1.5)))
    client, welcome = await ext_connect(server, "user=alice")
    await client.subscribe(ECHO)
    restored = 0
    async with asyncio.timeout(5):
        while True:
            await closed(server, client)
            await asyncio.sleep(0.2)
            client, welcome = await ext_connect(server, f"sid={welcome['sid']}")
            if not welcome.get("restored"):
                break
            restored += 1
    assert restored >= 3  # ~0.25 s each within 1.5 s
    await client.perform(ECHO, "ping_user")  # not subscribed: the subscription was not restored
    await client.expect_silence(0.3)


async def test_a_remote_disconnect_while_the_socket_is_closed_revokes_its_recovery(serve: ServerFactory) -> None:
    """remote_connections.where(current_user=alice).disconnect(reconnect=False) with alice offline:
    her sid no longer restores; bob's, kept at the same time, still does."""
    server = await serve()
    alice, alice_welcome = await ext_connect(server, "user=alice")
    bob, bob_welcome = await ext_connect(server, "user=bob")
    for client in (alice, bob):
        await client.subscribe(ECHO)
        await client.close()
    async with asyncio.timeout(3):
        while server.cable.sessions:
            await asyncio.sleep(0.01)
    await server.cable.remote_connections.where(current_user="alice").disconnect(reconnect=False)
    await asyncio.sleep(0.2)  # through the pub/sub, as from another process
    _, frame = await ext_connect(server, f"sid={alice_welcome['sid']}")
    assert "restored" not in frame
    _, frame = await ext_connect(server, f"sid={bob_welcome['sid']}")
    assert frame["restored"] is True and frame["restored_ids"] == [ECHO]
