"""What hostile clients can make the server hold is bounded, and given back when they leave.

Identifiers and stream names have a length limit (refused like the other limits); every store
kept per room or per stream (chat history, the frames kept for ``resume``, the extended
protocol's backlog) has a bound across all rooms, whatever number of rooms clients open.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from cable_server.backlog import Backlog, HistoryGone
from cable_server.llm.history import MemoryHistory
from cable_server.llm.replay import MemoryFrameStore
from cable_server.testing import FakeOpenAI, Reply
from protocol_tests.client import CableClient, assert_usable, ident

from .chat_helpers import UNBUDGETED, read_answer, room, start_chat
from .conftest import RunningServer, ServerFactory
from .processes import Launcher, rss_kib
from .test_observability import scrape


async def test_an_identifier_over_the_limit_is_rejected_and_counted(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """An identifier over max_identifier_length (1024): reject_subscription, a clipped warning, a count."""
    client = await server.client("?user=mallory")
    long = ident("EchoChannel", room="x" * 2000)
    await client.subscribe(long, confirm=False)
    assert await client.recv() == {"identifier": long, "type": "reject_subscription"}
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING and "identifier of" in r.getMessage()]
    assert len(record.getMessage()) < 400
    assert (await scrape(server))['cable_limit_hits_total{kind="identifier_length"}'] == 1
    await assert_usable(client)


async def test_a_stream_name_over_the_limit_rejects_the_subscription(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """max_stream_name_length=50: a channel streaming echo_<60 characters> has its subscription rejected."""
    server = await serve(max_stream_name_length=50)
    client = await server.client("?user=mallory")
    long = ident("EchoChannel", room="y" * 60)
    await client.subscribe(long, confirm=False)
    assert await client.recv() == {"identifier": long, "type": "reject_subscription"}
    assert (await scrape(server))['cable_limit_hits_total{kind="stream_name_length"}'] == 1
    await client.subscribe(ident("EchoChannel", room="short"))


async def test_clients_sending_megabyte_identifiers_leave_memory_as_it_was(launch: Launcher) -> None:
    """Three connections each subscribing 100 times with 0.9 MB identifiers (RSS went 66 -> 591 MB and
    stayed there): every one rejected, and once they left the server holds less than 48 MB more, not
    a share of the 270 MB sent (the allocator keeps 0-25 MB of the freed 0.9 MB blocks, at random)."""
    server = await launch("tests.fixture_app:create_app", "--log-level", "warning")
    warm = await server.client("/cable?user=warm")
    await warm.subscribe(ident("EchoChannel", room="warm"))
    before = rss_kib(server.process.pid)

    async def hostile(n: int) -> None:
        client = await server.client(f"/cable?user=hostile{n}")
        for k in range(100):
            identifier = ident("EchoChannel", room=f"{k}" + "z" * 900_000)
            await client.send({"command": "subscribe", "identifier": identifier})
            assert (await client.recv(10))["type"] == "reject_subscription"
        await client.close()

    await asyncio.gather(*(hostile(n) for n in range(3)))
    await asyncio.sleep(0.5)
    grown = rss_kib(server.process.pid) - before
    assert grown < 48 * 1024, f"{grown} KiB"
    await assert_usable(warm)


async def test_chat_stores_stay_within_their_bounds_however_many_rooms(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """300 rooms, each asked a 15 kB question: history and resume frames stay within their global
    bounds (1 MB and 100 kB here), the oldest rooms forgotten first, the newest still there."""
    chat = await start_chat(serve, fake_openai, history_max_bytes=1_000_000, resume_max_bytes=100_000, **UNBUDGETED)
    fake_openai.default = Reply(chunks=["ok"] * 10)
    cable = chat.server.cable
    cable.settings = dataclasses.replace(cable.settings, command_rate=0)  # 1,200 commands, quickly
    client: CableClient = await chat.user(None, subscribe=None)
    question = "q" * 15_000
    for name in (f"room{n}" for n in range(300)):
        await client.subscribe(room(name))
        await client.perform(room(name), "send_message", user_content=question, user_id=name)
        await read_answer(client, room(name), timeout=10)
        await client.send({"command": "unsubscribe", "identifier": room(name)})
    history, frames = chat.service.history, chat.service.frames
    assert isinstance(history, MemoryHistory) and isinstance(frames, MemoryFrameStore)
    assert history.bytes <= 1_000_000 and 0 < len(history) < 300
    assert frames.bytes <= 100_000 and 0 < len(frames) < 300
    assert await history.load("public_room299") and not await history.load("public_room0")


def test_the_backlog_records_at_most_max_streams() -> None:
    """Past max_streams the least recently used stream is forgotten (and reported, so the router can
    drop its subscription); a stream in use stays."""
    backlog = Backlog(max_streams=10)
    forgotten = [stream for n in range(30) for stream in backlog.track(f"s{n}")]
    assert len(backlog) == 10 and forgotten == [f"s{n}" for n in range(20)]
    backlog.record("s20", "payload")  # used: now the most recent
    assert backlog.track("s30") == ["s21"]
    assert backlog.tracked("s20")


def test_the_backlog_holds_at_most_max_bytes_of_messages() -> None:
    """Past max_bytes the oldest messages of the least recently used streams go first; a history that
    needs them is told they are gone, one that does not still gets its messages."""
    backlog = Backlog(max_bytes=1_100)  # three messages of 300 characters (349 bytes each)
    for stream in ("old", "new"):
        backlog.track(stream)
        for _ in range(3):
            backlog.record(stream, "x" * 300)
    assert backlog.bytes <= 1_100
    with pytest.raises(HistoryGone):
        backlog.after("old", backlog.epoch, 0)
    assert len(backlog.after("new", backlog.epoch, 0)) == 3


async def test_kept_sessions_hold_at_most_recovery_max_bytes(serve: ServerFactory) -> None:
    """Extended-protocol clients with 100 long identifiers each, opened and closed: the sessions kept
    for recovery stay within recovery_max_bytes (here 150 kB, two of them), the oldest forgotten first."""
    server = await serve(recovery_max_bytes=150_000, command_rate=0)
    sids = []
    for n in range(5):
        client = await CableClient.connect(
            f"{server.url}?user=u{n}", origin=server.origin, subprotocols=("actioncable-v1-ext-json",), welcome=False
        )
        sids.append((await client.recv())["sid"])
        for k in range(100):
            await client.subscribe(ident("EchoChannel", room=f"{k}".ljust(300, "r")))
        await client.close()
        async with asyncio.timeout(3):
            while server.cable.sessions:
                await asyncio.sleep(0.01)
    assert 0 < server.cable.recoverable.bytes <= 150_000
    oldest = await CableClient.connect(
        f"{server.url}?sid={sids[0]}", origin=server.origin, subprotocols=("actioncable-v1-ext-json",), welcome=False
    )
    assert "restored" not in await oldest.recv()
    newest = await CableClient.connect(
        f"{server.url}?sid={sids[-1]}", origin=server.origin, subprotocols=("actioncable-v1-ext-json",), welcome=False
    )
    assert (await newest.recv())["restored"] is True


async def test_the_budgets_count_memory_not_characters() -> None:
    """Non-ASCII text takes up to 4 bytes a character in memory, and counts so (emoji went 4x over)."""
    history = MemoryHistory(max_bytes=10_000)
    await history.append("r", {"role": "user", "content": "😀" * 1000})
    assert history.bytes >= 4_000
    backlog = Backlog(max_bytes=10_000)
    backlog.track("s")
    backlog.record("s", "😀" * 1000)
    assert backlog.bytes >= 4_000
