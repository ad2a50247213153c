"""Soak: thousands of clients connecting, chatting, dropping and coming back; nothing lost, nothing leaked.

The CI run is short (``CABLE_SOAK_SECONDS``, default 20; ``CABLE_SOAK_CLIENTS``, default 2,000);
run it longer by hand, e.g. ``CABLE_SOAK_SECONDS=600 pytest tests/test_soak.py -s``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cable_server.session import Session
from cable_server.testing import FakeOpenAI

from .chat_helpers import UNBUDGETED, Assembled, chat_app, room, script
from .conftest import ServerFactory
from .rawws import RawCable

SECONDS = float(os.environ.get("CABLE_SOAK_SECONDS", "20"))
CLIENTS = int(os.environ.get("CABLE_SOAK_CLIENTS", "2000"))
CHATTERS = 50  # users asking questions all the time; the rest hold idle connections and churn


@dataclass
class Tally:
    generations: int = 0
    chunks: int = 0
    drops: int = 0
    reconnects: int = 0
    lost: list[str] = field(default_factory=list)


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def server_tasks() -> list[asyncio.Task[Any]]:
    """The event loop's tasks but the fake model's (it keeps the SDK's pooled connections open)."""
    return [task for task in asyncio.all_tasks() if not task.get_coro().__qualname__.startswith("FakeOpenAI.")]  # type: ignore[union-attr]


def sessions_alive() -> int:
    gc.collect()
    return sum(isinstance(obj, Session) for obj in gc.get_objects())


async def subscribed(port: int, user: str) -> RawCable:
    client = await RawCable.connect(port, f"/cable?user={user}")
    await client.subscribe(room(user))
    return client


async def next_chat_frame(client: RawCable) -> dict[str, Any]:
    skipped = []
    while True:
        try:
            frame = await asyncio.wait_for(client.recv(), 10)
        except TimeoutError:
            raise AssertionError(f"no chat frame in 10 s; skipped {skipped[-5:]}") from None
        message = frame.get("message")
        if isinstance(message, dict) and "seq" in message:
            return message
        if frame.get("type") != "ping":
            skipped.append(frame)


async def chatter(port: int, user: str, until: float, tally: Tally, rng: random.Random) -> None:
    """Ask, read; now and then drop the socket mid-answer, come back, ``resume``; check every answer."""
    client = await subscribed(port, user)
    asked = 0
    answered: set[str] = set()
    while asked == 0 or time.monotonic() < until:  # at least one question
        question = f"{user}-q{asked}"
        asked += 1
        await client.send({"command": "message", "identifier": room(user), "data": _data("send_message", user_content=question)})
        assembled, message_id = Assembled(), ""
        drop_after = rng.randrange(1, 20) if rng.random() < 0.3 else None
        read = 0
        while not (message_id and assembled.finished(message_id)):
            message = await next_chat_frame(client)
            if message["message_id"] in answered:
                continue  # a replay of an earlier answer, still on its way after that answer ended
            assembled.add(message)
            message_id = message_id or message["message_id"]
            read += 1
            if read == drop_after:
                client.close()  # no close frame: the socket just goes
                tally.drops += 1
                client = await subscribed(port, user)
                tally.reconnects += 1
                after = {"message_id": message_id, "after_seq": assembled.last_seq(message_id)}
                await client.send({"command": "message", "identifier": room(user), "data": _data("resume", **after)})
        answered.add(message_id)
        expected = "".join(f"{question}.{k} " for k in range(20))
        tally.generations += 1
        tally.chunks += sum(frame["event"] == "delta" for frame in assembled.frames[message_id].values())
        if assembled.text(message_id) != expected:
            tally.lost.append(f"{question}: got {assembled.text(message_id)!r}")
    client.close()


async def churner(port: int, idle: list[RawCable], users: list[str], until: float, tally: Tally, rng: random.Random) -> None:
    """Idle users leave without a word and come back, all the time."""
    while time.monotonic() < until:
        index = rng.randrange(len(idle))
        idle[index].close()
        idle[index] = await subscribed(port, users[index])
        tally.reconnects += 1
        await asyncio.sleep(0.005)


def _data(action: str, **fields: Any) -> str:
    return json.dumps({"action": action, **fields})


async def soak(port: int, seconds: float, tally: Tally) -> int:
    """One round: every client connects, chatters chat and idle users churn for ``seconds``, then
    everyone leaves. Returns the RSS with every client connected."""
    users = [f"idle{i}" for i in range(CLIENTS - CHATTERS)]
    idle: list[RawCable] = []
    for start in range(0, len(users), 200):
        idle += await asyncio.gather(*(subscribed(port, user) for user in users[start : start + 200]))
    connected = rss()
    until = time.monotonic() + seconds
    await asyncio.gather(
        churner(port, idle, users, until, tally, random.Random(7)),
        *(chatter(port, f"chat{i}", until, tally, random.Random(i)) for i in range(CHATTERS)),
    )
    for client in idle:
        client.close()
    return connected


async def settled(cable: Any, service: Any) -> None:
    """Until every session is closed, freed, and no generation runs (at most 10 s)."""
    deadline = time.monotonic() + 10
    while (cable.sessions or service.active or sessions_alive()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)


async def test_thousands_of_clients_chatting_and_churning_lose_nothing_and_leak_nothing(serve: ServerFactory) -> None:
    async with FakeOpenAI(default=script) as fake:
        cable, service = chat_app(fake, max_concurrent=CHATTERS, resume_ttl=2.0, **UNBUDGETED)
        server = await serve(cable)
        # A warm-up round: the openai SDK imports most of itself (~50 MB of pydantic models) on
        # first use, and the allocator grows its pools; the baseline is taken after it.
        await soak(server.port, 3.0, Tally())
        await settled(cable, service)
        fake.requests.clear()  # the fake model records every request: test memory, not the server's
        tasks_before, rss_before, blocks_before = len(server_tasks()), rss(), sys.getallocatedblocks()

        tally = Tally()
        rss_connected = await soak(server.port, SECONDS, tally)
        await settled(cable, service)
        await asyncio.sleep(2.5)  # resume_ttl: the stored frames of every answer expire...
        await chatter(server.port, "late", time.monotonic(), Tally(), random.Random(0))  # ...when the next one is stored
        await settled(cable, service)
        fake.requests.clear()
        tasks_after, rss_after, blocks_after = len(server_tasks()), rss(), sys.getallocatedblocks()
        print(
            f"\nsoak: {SECONDS:.0f} s, {CLIENTS} clients ({CHATTERS} chatting), {tally.generations} generations, "
            f"{tally.chunks} chunks, {tally.drops} drops mid-answer, {tally.reconnects} reconnects, {len(tally.lost)} lost; "
            f"tasks {tasks_before} -> {tasks_after}; RSS {rss_before / 2**20:.0f} MiB -> {rss_connected / 2**20:.0f} MiB "
            f"connected -> {rss_after / 2**20:.0f} MiB after; Python objects {blocks_before} -> {blocks_after}"
        )

        assert tally.lost == []
        assert tally.generations >= CHATTERS and tally.drops > 0 and tally.reconnects > CHATTERS
        assert not cable.sessions and not service.active
        assert sessions_alive() == 0, "sessions still referenced after every client left"
        assert not list(cable.router._streams), "streams left behind"
        assert tasks_after <= tasks_before
        # What the server holds is back to the baseline: the count of live Python allocations, which
        # unlike RSS does not include the memory CPython's allocator keeps in its pools after a peak
        # (RSS is printed above). A leak of one object per connection or per answer would be >2,000.
        assert blocks_after - blocks_before < 2_000
