"""Application code that raises in every hook: the connection survives it and other users never notice."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from cable_server import CableServer, Channel, Connection, Settings
from protocol_tests.client import CableClient, assert_usable, closed_with, ident

from .conftest import ServerFactory
from .fixture_app import EchoChannel

EXPLODING = ident("ExplodingChannel")
WATCHER = ident("EchoChannel", room="watch")


class ExplodingConnection(Connection):
    """``?user=`` names the user; ``connect`` raises for ``crash``, ``disconnect`` raises for everyone."""

    identified_by = ("current_user",)

    async def connect(self) -> None:
        self.current_user = self.request.query_params.get("user")
        if self.current_user == "crash":
            raise RuntimeError("connect exploded")

    async def disconnect(self) -> None:
        raise RuntimeError("disconnect exploded")


class ExplodingChannel(Channel):
    """Every hook raises: subscribed (when asked), unsubscribed, its action, its stream callback, its timer."""

    def subscribed(self) -> None:
        self.stream_from("echo_watch", self.on_broadcast)
        self.periodically(self.tick, every=0.1)
        if self.params.get("fail") == "subscribed":
            raise RuntimeError("subscribed exploded")

    def unsubscribed(self) -> None:
        raise RuntimeError("unsubscribed exploded")

    def act(self) -> None:
        raise RuntimeError("action exploded")

    def on_broadcast(self, message: Any) -> None:
        raise RuntimeError("stream callback exploded")

    def tick(self) -> None:
        raise RuntimeError("timer exploded")


def exploded(caplog: pytest.LogCaptureFixture) -> set[str]:
    """The hooks whose exception was logged with its traceback."""
    return {str(r.exc_info[1]) for r in caplog.records if r.exc_info and "exploded" in str(r.exc_info[1])}


async def test_every_hook_raising_leaves_the_connection_and_other_users_untouched(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Subscribed, unsubscribed, an action, a stream callback, a timer, connect and disconnect all raise: each is
    logged; the victim's connection goes on working; a bystander gets every broadcast; the server goes on accepting."""
    cable = CableServer(connection_class=ExplodingConnection, channels=[ExplodingChannel, EchoChannel], settings=Settings())
    server = await serve(cable)
    bystander = await server.client("?user=bystander")
    await bystander.subscribe(WATCHER)
    victim = await server.client("?user=victim")
    await victim.subscribe(EXPLODING)
    await victim.subscribe(WATCHER)

    failing = ident("ExplodingChannel", fail="subscribed")
    await victim.send({"command": "subscribe", "identifier": failing})
    assert await victim.recv() == {"identifier": failing, "type": "reject_subscription"}
    await victim.perform(EXPLODING, "act")
    for n in range(3):
        await victim.perform(WATCHER, "shout", payload={"n": n})
    for client in (bystander, victim):
        assert [(await client.recv())["message"] for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    await asyncio.sleep(0.25)  # a few ticks of the timer
    await victim.unsubscribe(EXPLODING)
    await assert_usable(victim)

    assert await closed_with(await server.client("?user=crash", welcome=False)) == 1011
    await victim.close()
    for _ in range(50):
        if len(cable.sessions) == 1:
            break
        await asyncio.sleep(0.02)
    assert len(cable.sessions) == 1, "the victim's session outlived a disconnect that raised"

    assert exploded(caplog) == {
        "subscribed exploded",
        "unsubscribed exploded",
        "action exploded",
        "stream callback exploded",
        "timer exploded",
        "connect exploded",
        "disconnect exploded",
    }
    await bystander.perform(WATCHER, "echo", still="here")
    assert (await bystander.recv())["message"] == {"action": "echo", "still": "here"}
    late = await CableClient.connect(server.url + "?user=late", origin=server.origin)
    await assert_usable(late)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r.name.startswith("uvicorn")]
