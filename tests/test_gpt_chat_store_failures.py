"""An answer always ends on screen, with ``done``, ``stopped`` or ``error``, whatever fails under it:
the Redis that keeps its frames, the Redis pub/sub, or a pool of connections under load."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from cable_server import RedisBackend
from cable_server.testing import FakeOpenAI, RedisServer, Reply

from .chat_helpers import UNBUDGETED, chat_app, read_answer, room
from .conftest import RunningServer, ServerFactory

SLOW = Reply(chunks=[f"w{k} " for k in range(200)], delay=0.02)
_PREFIXES = itertools.count()


async def chat_on(serve: ServerFactory, fake: FakeOpenAI, redis: RedisServer, *, pubsub: bool, **settings: Any) -> RunningServer:
    """A chat server keeping its frames, history and claims in ``redis`` (its pub/sub there too if ``pubsub``)."""
    prefix = f"faults{next(_PREFIXES)}"
    cable, _ = chat_app(fake, history_url=redis.url, history_prefix=prefix, **settings)
    if pubsub:
        cable.set_pubsub(RedisBackend(redis.url, channel_prefix=prefix))
    return await serve(cable)


async def test_redis_dying_mid_answer_ends_it_with_an_unavailable_error(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Store and pub/sub both on the Redis that dies: the answer's last frame cannot be stored nor
    published, and still reaches the subscriber on this server; the connection lives on."""
    with RedisServer() as redis:
        server = await chat_on(serve, fake_openai, redis, pubsub=True)
        alice = await server.client()
        await alice.subscribe(room("alice"))
        fake_openai.push(SLOW)
        await alice.perform(room("alice"), "send_message", user_content="hi")
        for _ in range(5):
            assert (await alice.recv(5))["message"]["event"] in ("start", "delta")
        redis.kill()
        answer = await read_answer(alice, room("alice"), timeout=30)
        assert answer.last["event"] == "error", answer.last
        assert answer.last["error"]["category"] == "unavailable"
        assert [frame["seq"] for frame in answer.frames] == list(range(5, 5 + len(answer.frames)))
        await alice.perform(room("alice"), "send_message", user_content="again")  # the connection lives on
        frame = (await alice.recv(30))["message"]
        assert (frame["event"], frame["error"]["category"]) == ("error", "unavailable")


async def test_the_store_failing_under_a_working_pubsub_ends_the_answer(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Frames kept in a Redis that dies, broadcasts in process: the error frame is broadcast as usual."""
    with RedisServer() as redis:
        server = await chat_on(serve, fake_openai, redis, pubsub=False)
        alice, tab = await server.client(), await server.client()
        for client in (alice, tab):
            await client.subscribe(room("alice"))
        fake_openai.push(SLOW)
        await alice.perform(room("alice"), "send_message", user_content="hi")
        for _ in range(3):
            await alice.recv(5)
        redis.kill()
        for client in (alice, tab):
            answer = await read_answer(client, room("alice"), timeout=30)
            assert (answer.last["event"], answer.last["error"]["category"]) == ("error", "unavailable")
            seqs = [frame["seq"] for frame in answer.frames]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs  # no gap before the error


async def test_every_screen_of_a_room_gets_every_kept_frame_when_the_pubsub_dies(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer
) -> None:
    """Frames kept in a Redis that lives, published through one that dies, three screens of the
    room: a frame kept but not published is delivered here directly, so each screen gets every
    frame without a gap, then the error that ends the answer."""
    with RedisServer() as pubsub:
        prefix = f"faults{next(_PREFIXES)}"
        cable, _ = chat_app(fake_openai, history_url=redis_server.url, history_prefix=prefix)
        cable.set_pubsub(RedisBackend(pubsub.url, channel_prefix=prefix))
        server = await serve(cable)
        screens = [await server.client() for _ in range(3)]
        for screen in screens:
            await screen.subscribe(room("shared"))
        fake_openai.push(SLOW)
        await screens[0].perform(room("shared"), "send_message", user_content="hi")
        await asyncio.sleep(0.5)
        pubsub.kill()
        for screen in screens:
            answer = await read_answer(screen, room("shared"), timeout=30)
            assert [frame["seq"] for frame in answer.frames] == list(range(len(answer.frames)))
            assert (answer.last["event"], answer.last["error"]["category"]) == ("error", "unavailable")


async def test_requests_while_redis_is_down_get_an_error_frame(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """The room cannot be claimed, the history nor the frames read: the client is told
    (``unavailable``) instead of hearing nothing."""
    with RedisServer() as redis:
        server = await chat_on(serve, fake_openai, redis, pubsub=False)
        alice = await server.client()
        await alice.subscribe(room("alice"))
        redis.kill()
        await alice.perform(room("alice"), "send_message", user_content="hi")
        frame = (await alice.recv(30))["message"]
        assert (frame["event"], frame["error"]["category"]) == ("error", "unavailable")
        assert not fake_openai.requests
        for action in ("history", "resume", "stop", "reset"):  # each told, none silent
            await alice.perform(room("alice"), action)
            frame = (await alice.recv(30))["message"]
            assert (frame["event"], frame["error"]["category"]) == ("error", "unavailable"), action


async def test_two_hundred_answers_at_once_on_redis_all_arrive_whole(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer
) -> None:
    """More answers than a Redis pool has connections (redis-py's default: 100), each storing and
    publishing every chunk: none fails with "Too many connections", every one arrives in order."""
    server = await chat_on(serve, fake_openai, redis_server, pubsub=True, **UNBUDGETED)
    reply = Reply(chunks=[f"c{k} " for k in range(40)], delay=0.005)
    fake_openai.default = reply
    users = [await server.client() for _ in range(200)]
    for n, user in enumerate(users):
        await user.subscribe(room(n))
    for n, user in enumerate(users):
        await user.perform(room(n), "send_message", user_content="hi")
    answers = await asyncio.gather(*(read_answer(user, room(n), timeout=60) for n, user in enumerate(users)))
    assert {answer.last["event"] for answer in answers} == {"done"}
    assert {answer.text for answer in answers} == {reply.text}
    assert all([frame["seq"] for frame in answer.frames] == list(range(len(answer.frames))) for answer in answers)
