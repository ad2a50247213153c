"""Disconnects the server starts: restart, and remote disconnect by identifier."""

from __future__ import annotations

import pytest

from .client import closed_with, ident
from .conftest import Connect, Target

RESTART = '{"type":"disconnect","reason":"server_restart","reconnect":true}'


async def test_restart_disconnects_every_client_and_new_ones_connect(connect: Connect, target: Target) -> None:
    """server restart: server_restart (reconnect true) and close 1000 to all; new clients are welcomed."""
    clients = [await connect(f"r{n}") for n in range(3)]
    await clients[0].subscribe(ident("EchoChannel", room="restart"))
    target.admin("restart")
    for client in clients:
        assert await client.recv_raw() == RESTART
        assert await closed_with(client) == 1000
    fresh = await connect("after-restart")
    await fresh.subscribe(ident("EchoChannel", room="restart"))
    assert (await fresh.recv(timeout=4, pings=True))["type"] == "ping"


@pytest.mark.differs("remote_disconnect_frame")
@pytest.mark.parametrize("reconnect", [True, False])
async def test_remote_disconnect_closes_only_that_users_connections(
    connect: Connect, target: Target, rails_way: bool, reconnect: bool
) -> None:
    """remote_connections.where(current_user:).disconnect closes that user's sockets, no one else's."""
    mine = [await connect("remote-me") for _ in range(2)]
    other = await connect("remote-other")
    target.admin("disconnect", user="remote-me", reconnect=str(reconnect).lower())
    for client in mine:
        if not rails_way:
            assert await client.recv() == {"type": "disconnect", "reason": "remote", "reconnect": reconnect}
        assert await closed_with(client) == 1000
    await other.subscribe(ident("EchoChannel", room="still-here"))
