"""No chunk lost: a client whose socket dies mid-answer reconnects, calls resume, and ends with the whole answer."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest

from cable_server import RedisBackend
from cable_server.testing import FakeOpenAI, RedisServer
from protocol_tests.client import CableClient

from .chat_helpers import UNBUDGETED, Assembled, chat_app, read_answer, room, script, start_chat, transcript
from .conftest import RunningServer, ServerFactory
from .proxy import cuttable_proxy

Connect = Callable[[str], Awaitable[CableClient]]


async def ask_drop_resume(
    connect_first: Connect, connect_again: Connect, user: str, question: str, frames_before_drop: int
) -> tuple[Assembled, str]:
    """Ask, read ``frames_before_drop`` frames, kill the socket (no close frame), reconnect, resume."""
    assembled = Assembled()
    message_id = None
    client = await connect_first(user)
    await client.subscribe(room(user))
    await client.perform(room(user), "send_message", user_content=question)
    for _ in range(frames_before_drop):
        message = (await client.recv(5))["message"]
        assembled.add(message)
        message_id = message["message_id"]
    client.ws.transport.abort()
    again = await connect_again(user)
    await again.subscribe(room(user))
    where = {"message_id": message_id, "after_seq": assembled.last_seq(message_id)} if message_id else {}
    await again.perform(room(user), "resume", **where)
    while message_id is None or not assembled.finished(message_id):
        message = (await again.recv(5))["message"]
        assembled.add(message)
        message_id = message_id or message["message_id"]
    await again.close()
    return assembled, message_id


async def drop_many(connect_first: Connect, connect_again: Connect, generations: int, users: int = 10) -> None:
    """``generations`` answers over ``users`` concurrent users, each socket killed at a random frame."""
    rng = random.Random(20261124)
    plan = [(f"u{n % users}", f"q{n}", rng.randrange(0, 23)) for n in range(generations)]

    async def user_runs(user: str) -> None:
        for name, question, drop in plan:
            if name != user:
                continue
            assembled, message_id = await ask_drop_resume(connect_first, connect_again, user, question, drop)
            assert assembled.text(message_id) == "".join(f"{question}.{k} " for k in range(20)), (question, drop)

    await asyncio.gather(*(user_runs(f"u{n}") for n in range(users)))


async def test_two_hundred_answers_survive_a_killed_socket(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Sockets killed at random frames of 200 answers: after resume, each text equals upstream's, no gap, no duplicate."""
    chat = await start_chat(serve, fake_openai, **UNBUDGETED)
    fake_openai.default = script
    await drop_many(chat.user_client, chat.user_client, 200)


async def test_two_hundred_answers_resume_on_another_server(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer
) -> None:
    """The reconnect lands on a second server (its own pub/sub, stores and model client) sharing Redis."""
    fake_openai.default = script
    servers: list[RunningServer] = []
    for _ in range(2):
        cable, _ = chat_app(fake_openai, history_url=redis_server.url, history_prefix="resume-test", **UNBUDGETED)
        cable.set_pubsub(RedisBackend(redis_server.url, channel_prefix="resume-test"))
        servers.append(await serve(cable))

    async def first(user: str) -> CableClient:
        return await servers[0].client(f"?user={user}")

    async def second(user: str) -> CableClient:
        return await servers[1].client(f"?user={user}")

    await drop_many(first, second, 200)


async def test_answers_survive_a_cut_tcp_connection(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A proxy resets the TCP connection mid-answer (both ends see it die): reconnect, resume, whole
    answer; 30 times in a row, quicker than any person asks."""
    chat = await start_chat(serve, fake_openai, **UNBUDGETED)
    fake_openai.default = script
    async with cuttable_proxy(chat.server.port) as proxy:

        async def through_proxy(user: str) -> CableClient:
            return await CableClient.connect(
                f"ws://127.0.0.1:{proxy.port}/cable?user={user}", origin=f"http://127.0.0.1:{proxy.port}"
            )

        rng = random.Random(7)
        for n in range(30):
            assembled, message_id = Assembled(), None
            client = await through_proxy("mobile")
            await client.subscribe(room("mobile"))
            await client.perform(room("mobile"), "send_message", user_content=f"q{n}")
            for _ in range(rng.randrange(1, 20)):
                message = (await client.recv(5))["message"]
                assembled.add(message)
                message_id = message["message_id"]
            proxy.cut()
            assert message_id is not None
            again = await through_proxy("mobile")
            await again.subscribe(room("mobile"))
            await again.perform(room("mobile"), "resume", message_id=message_id, after_seq=assembled.last_seq(message_id))
            while not assembled.finished(message_id):
                assembled.add((await again.recv(5))["message"])
            assert assembled.text(message_id) == "".join(f"q{n}.{k} " for k in range(20))
            await again.close()


async def test_resuming_a_finished_answer_replays_up_to_done(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    chat = await start_chat(serve, fake_openai)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    answer = await read_answer(alice, room("alice"))
    await alice.perform(room("alice"), "resume", message_id=answer.last["message_id"], after_seq=1)
    replayed = await read_answer(alice, room("alice"))
    assert [f["seq"] for f in replayed.frames] == list(range(2, len(answer.frames)))
    assert all(f["replay"] is True for f in replayed.frames)
    assert replayed.last["event"] == "done"
    await alice.perform(room("alice"), "resume", message_id=answer.last["message_id"], after_seq=-5)
    assert [f["seq"] for f in (await read_answer(alice, room("alice"))).frames] == list(range(len(answer.frames)))


async def test_resume_without_a_message_id_finds_the_rooms_latest_answer(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A client that lost the socket before the start frame still finds its answer."""
    chat = await start_chat(serve, fake_openai)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    answer = await read_answer(alice, room("alice"))
    await alice.perform(room("alice"), "resume")
    assert (await read_answer(alice, room("alice"))).text == answer.text


async def test_expired_frames_answer_expired_and_history_has_the_text(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Past resume_ttl the frames are gone: `expired`; `history` still returns the conversation."""
    chat = await start_chat(serve, fake_openai, resume_ttl=0.2)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    answer = await read_answer(alice, room("alice"))
    await asyncio.sleep(0.3)
    await alice.perform(room("alice"), "resume", message_id=answer.last["message_id"], after_seq=0)
    assert (await alice.recv())["message"] == {"content": "", "event": "expired", "message_id": answer.last["message_id"]}
    await alice.perform(room("alice"), "history")
    question, reply = transcript((await alice.recv())["message"])
    assert question == {"role": "user", "content": "hi"}
    assert (reply["content"], reply["message_id"], reply["status"]) == (answer.text, answer.last["message_id"], "done")


async def test_nobody_resumes_another_users_answer(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Alice asking to resume Bob's message_id gets `expired`, never Bob's frames."""
    chat = await start_chat(serve, fake_openai)
    alice, bob = await chat.user("alice"), await chat.user("bob")
    await bob.perform(room("bob"), "send_message", user_content="secret")
    bobs = await read_answer(bob, room("bob"))
    await alice.perform(room("alice"), "resume", message_id=bobs.last["message_id"], after_seq=-1)
    assert (await alice.recv())["message"]["event"] == "expired"
    await alice.expect_silence(0.3)


@pytest.mark.parametrize("after_seq", ["3", None, True, 2.5])
async def test_a_malformed_after_seq_replays_from_the_start(
    serve: ServerFactory, fake_openai: FakeOpenAI, after_seq: object
) -> None:
    chat = await start_chat(serve, fake_openai)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    answer = await read_answer(alice, room("alice"))
    await alice.perform(room("alice"), "resume", message_id=answer.last["message_id"], after_seq=after_seq)
    assert [f["seq"] for f in (await read_answer(alice, room("alice"))).frames] == [f["seq"] for f in answer.frames]
