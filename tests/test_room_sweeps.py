"""Sweeping anonymous rooms is slow: joining a room, ``history`` and ``resume`` count as visits, at
most ``room_visits_per_minute_per_connection`` and ``..._per_address`` a minute (a minute's worth
at once, then a sixtieth of it a second). On an anonymous connection a room id is a capability and
the blog's ids are numbers; past the limit a subscription is rejected (as Rails rejects) and
``history``/``resume`` get ``rate_limited`` with ``retry_after``, logged once a minute, counted.
Identified connections reach their own room only and are never counted."""

from __future__ import annotations

import logging
import time

import pytest

from cable_server.testing import FakeOpenAI, Reply

from .chat_helpers import read_answer, room, start_chat
from .conftest import ServerFactory
from .test_observability import scrape


async def test_one_connection_visits_its_share_of_rooms_then_is_refused(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    chat = await start_chat(serve, fake_openai, room_visits_per_minute_per_connection=6)
    sweeper = await chat.user(None, subscribe=None)
    for n in range(3):  # two visits each: the subscription and its history
        await sweeper.subscribe(room(n))
        await sweeper.perform(room(n), "history")
        assert (await sweeper.recv())["message"]["event"] == "history"
    await sweeper.subscribe(room(3), confirm=False)
    assert await sweeper.recv() == {"identifier": room(3), "type": "reject_subscription"}
    for action in ("history", "resume"):
        await sweeper.perform(room(0), action)
        refused = (await sweeper.recv())["message"]
        assert refused["event"] == "error" and refused["error"]["category"] == "rate_limited"
        assert 1 <= refused["error"]["retry_after"] <= 10
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "room_visits" in r.getMessage()]
    assert len(warnings) == 1 and "per connection" in warnings[0]
    assert (await scrape(chat.server))['cable_limit_hits_total{kind="room_visits"}'] == 3

    other = await chat.user(None, subscribe=7)  # another connection has a share of its own
    await other.perform(room(7), "history")
    assert (await other.recv())["message"]["event"] == "history"


async def test_the_connections_of_one_address_share_its_visits(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A sweep spread over many sockets from one address gets the address's share, not theirs together."""
    chat = await start_chat(serve, fake_openai, room_visits_per_minute_per_address=10)
    confirmed = 0
    for n in range(15):
        client = await chat.user(None, subscribe=None)
        await client.subscribe(room(n), confirm=False)
        reply = await client.recv()
        confirmed += reply["type"] == "confirm_subscription"
    assert confirmed == 10


async def test_a_sweep_with_the_defaults_runs_at_a_few_rooms_a_second(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """100 sockets sweeping numeric rooms for 3 s, each subscribing and asking `history`: at most
    the address's minute (300 visits) plus 5 a second get through, instead of thousands."""
    chat = await start_chat(serve, fake_openai)
    clients = [await chat.user(None, subscribe=None) for _ in range(100)]
    visits = 0
    started = time.monotonic()
    for n in range(2_000):
        if time.monotonic() - started > 3:
            break
        client = clients[n % 100]
        await client.subscribe(room(n), confirm=False)
        if (await client.recv())["type"] != "confirm_subscription":
            continue
        visits += 1
        await client.perform(room(n), "history")
        visits += (await client.recv())["message"]["event"] == "history"
    elapsed = time.monotonic() - started
    assert n > 400, "the sweep should have tried more rooms than it may visit"
    assert visits <= 300 + 5 * elapsed + 1


async def test_identified_connections_are_not_counted(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    chat = await start_chat(serve, fake_openai, room_visits_per_minute_per_connection=1, room_visits_per_minute_per_address=1)
    alice = await chat.user("alice")
    for _ in range(5):
        await alice.perform(room("alice"), "history")
        assert (await alice.recv())["message"]["event"] == "history"


async def test_the_blogs_page_reloading_is_never_refused_by_the_defaults(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """The blog's page loaded 20 times (subscribe, a question), with a reload's resume and history."""
    chat = await start_chat(serve, fake_openai)
    for _ in range(20):
        page = await chat.user(None, subscribe=42)
        await page.perform(room(42), "resume")  # the previous answer, replayed
        await page.perform(room(42), "history")
        while (message := (await page.recv())["message"]).get("replay"):
            pass
        assert message["event"] == "history"
        await page.perform(room(42), "send_message", user_content="hi", user_id=42)
        assert (await read_answer(page, room(42))).last["event"] == "done"
        await page.close()


async def test_replays_count_on_every_connection_and_long_ones_more(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """`resume` replays a whole answer for one small command: on identified connections too it is
    a visit, and one more per 1,000 frames replayed (4 sockets resuming a long answer 45 times a
    second held a bystander's echo for 8.5 s)."""
    chat = await start_chat(serve, fake_openai, room_visits_per_minute_per_connection=8)
    fake_openai.push(Reply(chunks=["x"] * 2_500))
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="long")
    answer = await read_answer(alice, room("alice"), timeout=20)
    assert answer.last["event"] == "done" and len(answer.frames) >= 2_000
    events = []
    for _ in range(3):  # 1 visit to ask, 2 more for over 2,000 frames: 8 -> 5 -> 2, then refused
        await alice.perform(room("alice"), "resume")
        while (message := (await alice.recv())["message"])["event"] not in ("done", "error"):
            pass
        events.append(message.get("error", {}).get("category") or message["event"])
    assert events == ["done", "done", "rate_limited"]
