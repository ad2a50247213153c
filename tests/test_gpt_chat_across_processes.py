"""GptChatChannel on two servers sharing Redis (``--workers``, or several hosts): one answer per room
whichever server its subscribers are on; ``stop`` and ``reset`` reach the answer where it runs; an
answer still heard on the other server is not cancelled as orphaned."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import redis.asyncio as aioredis

from cable_server import RedisBackend
from cable_server.testing import FakeOpenAI, RedisServer, Reply
from protocol_tests.client import CableClient

from .chat_helpers import chat_app, read_answer, room, transcript
from .conftest import RunningServer, ServerFactory

SLOW = Reply(chunks=[f"w{k} " for k in range(60)], delay=0.03)
_PREFIXES = itertools.count()


async def two_servers(serve: ServerFactory, fake: FakeOpenAI, redis: RedisServer, **settings: Any) -> list[RunningServer]:
    """Two servers with their own pub/sub client, stores and model client, on one Redis."""
    prefix = f"across{next(_PREFIXES)}"
    servers = []
    for _ in range(2):
        cable, _ = chat_app(fake, history_url=redis.url, history_prefix=prefix, **settings)
        cable.set_pubsub(RedisBackend(redis.url, channel_prefix=prefix))
        servers.append(await serve(cable))
    return servers


async def closed_early(request: Any, seconds: float = 3.0) -> bool:
    """Whether the server closed this upstream request before its end (waiting ``seconds`` for it)."""
    for _ in range(int(seconds * 20)):
        if request.closed_early:
            return True
        await asyncio.sleep(0.05)
    return False


async def in_room(server: RunningServer, name: str) -> CableClient:
    client = await server.client()  # anonymous, as the blog's frontend
    await client.subscribe(room(name))
    return client


async def test_a_room_answers_one_question_at_a_time_across_servers(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer
) -> None:
    """A second question in the same room on the other server is busy (naming the running answer),
    to its sender alone; the model is asked once; both screens show one clean answer."""
    here, there = await two_servers(serve, fake_openai, redis_server)
    asker, other = await in_room(here, "shared"), await in_room(there, "shared")
    fake_openai.push(SLOW)
    await asker.perform(room("shared"), "send_message", user_content="first")
    start = (await asker.recv())["message"]
    assert (await other.recv())["message"] == start
    await other.perform(room("shared"), "send_message", user_content="second")
    frames = [start]
    while frames[-1]["event"] != "done":
        frames.append((await other.recv(5))["message"])
    busy = [f for f in frames if f["event"] == "error"]
    assert (
        busy == [{"content": "", "event": "error", "message_id": start["message_id"], "error": busy[0]["error"]}]
        and busy[0]["error"]["category"] == "busy"
    )
    assert "".join(f["content"] for f in frames) == SLOW.text
    assert {f["message_id"] for f in frames} == {start["message_id"]}
    assert (await read_answer(asker, room("shared"), timeout=10)).text == SLOW.text
    assert len(fake_openai.requests) == 1


async def test_stop_and_reset_reach_the_answer_on_the_other_server(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer
) -> None:
    """stop sent to the other server ends the answer (both screens get stopped, the upstream stream is
    closed); reset sent there stops the next one and forgets the conversation everywhere."""
    here, there = await two_servers(serve, fake_openai, redis_server)
    asker, other = await in_room(here, "r"), await in_room(there, "r")
    fake_openai.push(SLOW, SLOW)
    await asker.perform(room("r"), "send_message", user_content="one")
    start = (await other.recv())["message"]
    await fake_openai.wait_for_requests(1)  # stopped while streaming, so the upstream stream is there to close
    await other.perform(room("r"), "stop", message_id=start["message_id"])
    for client in (asker, other):
        last = (await read_answer(client, room("r"), timeout=5)).last
        assert (last["event"], last["reason"]) == ("stopped", "stopped")
    assert await closed_early(fake_openai.requests[0])

    await asker.perform(room("r"), "send_message", user_content="two")
    assert (await other.recv())["message"]["event"] == "start"
    await other.perform(room("r"), "reset")
    frames: list[dict[str, Any]] = []  # the answer stopped here and the reset sent there: either may come first
    while not ({"content": "", "event": "reset"} in frames and any(f.get("reason") == "reset" for f in frames)):
        frames.append((await asker.recv(5))["message"])
    await asker.perform(room("r"), "history")
    assert transcript((await asker.recv())["message"]) == []


async def test_stop_requests_travel_on_one_subscription_per_process(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer
) -> None:
    """Ten answers on each server: Redis holds one control subscription per process, not one per
    answer (1,000 answers starting at once queued 1,000 SUBSCRIBE round trips before the model)."""
    here, there = await two_servers(serve, fake_openai, redis_server)
    fake_openai.default = Reply(chunks=["a", "b"])
    for server in (here, there):
        clients = [await in_room(server, f"{id(server)}-{n}") for n in range(10)]
        for n, client in enumerate(clients):
            await client.perform(room(f"{id(server)}-{n}"), "send_message", user_content="hi")
        for n, client in enumerate(clients):
            assert (await read_answer(client, room(f"{id(server)}-{n}"))).last["event"] == "done"
    redis = aioredis.Redis.from_url(redis_server.url)
    try:
        channels = [name.decode() for name in await redis.pubsub_channels("*gpt_chat:control*")]
        assert len(channels) == 1, channels
        assert (await redis.pubsub_numsub(channels[0]))[0][1] == 2
    finally:
        await redis.aclose()


async def test_an_answer_heard_on_the_other_server_is_not_orphaned(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer
) -> None:
    """The asker leaves mid-answer; a subscriber on the other server still receives all of it. When
    nobody is left anywhere, the answer ends as no_subscribers."""
    here, there = await two_servers(serve, fake_openai, redis_server, orphan_grace=0.2)
    asker, other = await in_room(here, "o"), await in_room(there, "o")
    fake_openai.push(SLOW, SLOW)
    await asker.perform(room("o"), "send_message", user_content="keep going")
    assert (await asker.recv())["message"]["event"] == "start"
    await asker.close()
    answer = await read_answer(other, room("o"), timeout=10)
    assert answer.last["event"] == "done" and answer.text == SLOW.text

    asker = await in_room(here, "o")
    await asker.perform(room("o"), "send_message", user_content="nobody listens")
    assert (await other.recv())["message"]["event"] == "start"
    await other.close()
    await asker.close()
    service = here.cable.extensions["gpt_chat"]
    for _ in range(60):
        if not service.active:
            break
        await asyncio.sleep(0.05)
    assert not service.active
    for request in fake_openai.requests[1:]:  # none if it ended before asking the model
        assert await closed_early(request)
