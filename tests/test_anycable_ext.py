"""AnyCable's ``actioncable-v1-ext-json``: sid, stream offsets, history after a reconnect, ping/pong."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from cable_server.backlog import Backlog, HistoryGone
from cable_server.errors import UnknownCommand
from cable_server.protocol import History, HistoryRequest, Ping, Pong, Subscribe, decode_command
from protocol_tests.client import CableClient, ident

from .conftest import RunningServer
from .frontend import npm_ci
from .proxy import cuttable_proxy

EXT = ("actioncable-v1-ext-json",)
ECHO = ident("EchoChannel", room="x")
NODE_DIR = Path(__file__).parent / "node"


async def ext_client(server: RunningServer, port: int | None = None) -> tuple[CableClient, dict[str, Any]]:
    url = f"ws://127.0.0.1:{port or server.port}/cable"
    client = await CableClient.connect(url, origin=f"http://127.0.0.1:{port or server.port}", subprotocols=EXT, welcome=False)
    return client, await client.recv()


# --- the protocol core ----------------------------------------------------------------------


def test_extended_commands_are_decoded_only_on_the_extended_protocol() -> None:
    history = json.dumps(
        {
            "command": "history",
            "identifier": '{"channel":"A"}',
            "history": {"since": 17, "streams": {"s": {"epoch": "e1", "offset": 3}}},
        }
    )
    assert decode_command(history, extended=True) == History('{"channel":"A"}', HistoryRequest(17, {"s": ("e1", 3)}))
    assert decode_command('{"command":"ping"}', extended=True) == Ping()
    assert decode_command('{"command":"pong"}', extended=True) == Pong()
    for text in (history, '{"command":"ping"}'):
        with pytest.raises(UnknownCommand):
            decode_command(text)


def test_a_subscribe_may_carry_a_history_request() -> None:
    frame = (
        '{"command":"subscribe","identifier":"{\\"channel\\":\\"A\\"}","history":{"since":5,"streams":{"bad":{"offset":"1"}}}}'
    )
    command = decode_command(frame, extended=True)
    assert isinstance(command, Subscribe) and command.history == HistoryRequest(5, {})
    plain = decode_command(frame)
    assert isinstance(plain, Subscribe) and plain.history is None


def test_the_backlog_gives_what_follows_an_offset_or_says_it_is_gone() -> None:
    backlog = Backlog(limit=3)
    backlog.track("s")
    offsets = [backlog.record("s", json.dumps(n)) for n in range(5)]
    assert offsets == [1, 2, 3, 4, 5] and backlog.record("untracked", "1") is None
    assert backlog.after("s", backlog.epoch, 3) == [(4, "3"), (5, "4")]
    assert backlog.after("s", backlog.epoch, 5) == []
    for epoch, offset in ((backlog.epoch, 1), ("other", 4), (backlog.epoch, 9)):  # evicted, other epoch, future
        with pytest.raises(HistoryGone):
            backlog.after("s", epoch, offset)
    assert [o for o, _ in backlog.since("s", int(time.time()) - 5)] == [3, 4, 5]
    assert backlog.since("nothing", 0) == []


async def gone(server: RunningServer) -> None:
    """Wait until the server has closed every session (and kept what a recovery needs)."""
    async with asyncio.timeout(3):
        while server.cable.sessions:
            await asyncio.sleep(0.01)


# --- over a socket --------------------------------------------------------------------------


async def test_the_welcome_carries_a_session_id(server: RunningServer) -> None:
    _, first = await ext_client(server)
    _, second = await ext_client(server)
    assert first["type"] == "welcome" and first["sid"] and first["sid"] != second["sid"]


async def test_ext_clients_get_offsets_and_plain_clients_get_rails_bytes(server: RunningServer) -> None:
    """On one stream: the ext client's frames carry stream_id/epoch/offset, the v1 client's are Rails' own."""
    ext, _ = await ext_client(server)
    plain = await server.client()
    for client in (ext, plain):
        await client.subscribe(ECHO)
    for n in (1, 2):
        await server.cable.broadcast("echo_x", {"n": n})
    first, second = await ext.recv(), await ext.recv()
    assert first["stream_id"] == "echo_x" and [first["offset"], second["offset"]] == [1, 2]
    assert first["epoch"] == second["epoch"] == server.cable.router.backlog.epoch
    assert await plain.recv_raw() == '{"identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"x\\"}","message":{"n":1}}'


async def test_missed_broadcasts_come_back_after_the_last_offset(server: RunningServer) -> None:
    """Reconnect and subscribe with history {stream: {epoch, offset}}: the missed ones, in order, then confirm_history."""
    client, _ = await ext_client(server)
    await client.subscribe(ECHO)
    await server.cable.broadcast("echo_x", {"n": 1})
    seen = await client.recv()
    await client.close()
    for n in (2, 3, 4):
        await server.cable.broadcast("echo_x", {"n": n})
    again, _ = await ext_client(server)
    position = {"epoch": seen["epoch"], "offset": seen["offset"]}
    await again.send({"command": "subscribe", "identifier": ECHO, "history": {"since": 0, "streams": {"echo_x": position}}})
    assert (await again.recv())["type"] == "confirm_subscription"
    assert [(await again.recv())["message"]["n"] for _ in range(3)] == [2, 3, 4]
    assert await again.recv() == {"type": "confirm_history", "identifier": ECHO}
    await server.cable.broadcast("echo_x", {"n": 5})
    assert (await again.recv())["offset"] == 5


async def test_history_since_a_time_and_its_refusals(server: RunningServer) -> None:
    """`since` replays recent broadcasts; another epoch or an empty request gets reject_history."""
    client, _ = await ext_client(server)
    await client.subscribe(ECHO)
    await server.cable.broadcast("echo_x", {"n": 1})
    await client.recv()
    await client.send({"command": "history", "identifier": ECHO, "history": {"since": int(time.time()) - 10}})
    assert (await client.recv())["message"] == {"n": 1}
    assert (await client.recv())["type"] == "confirm_history"
    stale = {"echo_x": {"epoch": "dead", "offset": 1}}
    for history in ({"streams": stale}, {}):
        await client.send({"command": "history", "identifier": ECHO, "history": history})
        assert await client.recv() == {"type": "reject_history", "identifier": ECHO}


async def test_ping_is_answered_with_pong(server: RunningServer) -> None:
    client, _ = await ext_client(server)
    await client.send({"command": "pong"})
    await client.send({"command": "ping"})
    assert await client.recv() == {"type": "pong"}


async def test_anycable_web_gets_every_broadcast_across_a_cut_connection(server: RunningServer) -> None:
    """The unmodified @anycable/web client (ext protocol): broadcasts made while its TCP connection was
    cut arrive after it reconnects, in order, none twice."""
    npm_ci(NODE_DIR, "@anycable/web", "ws")
    async with cuttable_proxy(server.port) as proxy:
        process = await asyncio.create_subprocess_exec(
            "node", "anycable_client.mjs", f"ws://127.0.0.1:{proxy.port}/cable", f"http://127.0.0.1:{proxy.port}", "x",
            cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        events: list[dict[str, Any]] = []

        async def next_event(kind: str) -> dict[str, Any]:
            assert process.stdout is not None
            async with asyncio.timeout(15):
                while True:
                    event = json.loads(await process.stdout.readline())
                    events.append(event)
                    if event["event"] == kind:
                        return event

        try:
            await next_event("subscribed")
            await server.cable.broadcast("echo_x", {"n": 1})
            await next_event("message")
            proxy.cut()
            await next_event("disconnect")
            for n in (2, 3, 4):
                await server.cable.broadcast("echo_x", {"n": n})
            await next_event("connect")
            received = [(await next_event("message"))["data"]["n"] for _ in range(3)]
            await server.cable.broadcast("echo_x", {"n": 5})
            received.append((await next_event("message"))["data"]["n"])
            assert [1, *received] == [1, 2, 3, 4, 5], events
        finally:
            assert process.stdin is not None
            process.stdin.close()
            await process.wait()


async def test_a_session_is_recovered_with_its_sid(server: RunningServer) -> None:
    """Reconnecting with ?sid=: welcome says restored, the subscription is back without a subscribe,
    the identity is the old one (connect did not run again), and history fills the gap."""
    url, origin = f"ws://127.0.0.1:{server.port}/cable", server.origin
    client = await CableClient.connect(f"{url}?user=alice", origin=origin, subprotocols=EXT, welcome=False)
    sid = (await client.recv())["sid"]
    await client.subscribe(ECHO)
    await server.cable.broadcast("echo_x", {"n": 1})
    seen = await client.recv()
    await client.close()
    await gone(server)
    await server.cable.broadcast("echo_x", {"n": 2})

    again = await CableClient.connect(f"{url}?sid={sid}", origin=origin, subprotocols=EXT, welcome=False)
    welcome = await again.recv()
    assert welcome["restored"] is True and welcome["restored_ids"] == [ECHO] and welcome["sid"] != sid
    position = {"echo_x": {"epoch": seen["epoch"], "offset": seen["offset"]}}
    await again.send({"command": "history", "identifier": ECHO, "history": {"streams": position}})
    assert (await again.recv())["message"] == {"n": 2}
    assert (await again.recv())["type"] == "confirm_history"
    await again.perform(ECHO, "ping_user")
    assert (await again.recv())["message"] == {"user": "alice"}
    await server.cable.broadcast("echo_x", {"n": 3})
    assert (await again.recv())["message"] == {"n": 3}


async def test_an_unknown_or_used_sid_gets_a_fresh_session(server: RunningServer) -> None:
    """A sid restores once; an unknown one is a normal connection (connect runs, nothing restored)."""
    url, origin = f"ws://127.0.0.1:{server.port}/cable", server.origin
    first = await CableClient.connect(f"{url}?user=bob", origin=origin, subprotocols=EXT, welcome=False)
    sid = (await first.recv())["sid"]
    await first.close()
    await gone(server)
    restored = await CableClient.connect(f"{url}?sid={sid}", origin=origin, subprotocols=EXT, welcome=False)
    assert (await restored.recv())["restored"] is True
    for stale in (sid, "never-issued"):
        fresh = await CableClient.connect(f"{url}?sid={stale}&user=carol", origin=origin, subprotocols=EXT, welcome=False)
        assert "restored" not in await fresh.recv()
