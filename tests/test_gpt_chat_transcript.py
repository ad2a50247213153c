"""What a chat screen needs to never lose a turn: the transcript, requests sent again, and shutdown.

* ``history`` is the transcript as the user saw it (stopped and failed answers marked), not the
  model's trimmed memory, and says which model answers and how long a question may be;
* a ``send_message`` with a ``request_id`` is acknowledged by the ``start`` frame (or the error
  frame) carrying it; sent again after a reconnect, it is the same answer, never a second one;
* a server shutting down ends the answers it writes with ``stopped`` (``shutdown``) before it
  tells its clients to go.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cable_server.testing import FakeOpenAI, Reply
from cable_server.testing.redis_server import RedisServer

from .chat_helpers import read_answer, room, start_chat, transcript
from .conftest import ServerFactory

SLOW = Reply(chunks=[f"w{k} " for k in range(200)], delay=0.02)


async def test_the_transcript_marks_how_each_answer_ended(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """done (with its finish reason), stopped, and failed before any text: all in `history`; the model
    is sent only what was answered."""
    chat = await start_chat(serve, fake_openai, history_messages=20, history_tokens=10, max_prompt_chars=500)
    alice = await chat.user("alice")
    fake_openai.push(Reply(chunks=["cut", " short"], finish_reason="length"), SLOW, Reply.error(429, "Slow down."))
    ids = []
    for question in ("one", "two", "three"):
        await alice.perform(room("alice"), "send_message", user_content=question)
        start = (await alice.recv())["message"]
        assert (start["event"], start["question"]) == ("start", question)
        ids.append(start["message_id"])
        if question == "two":
            await alice.perform(room("alice"), "stop")
        await read_answer(alice, room("alice"), timeout=10)
    await alice.perform(room("alice"), "history")
    frame = (await alice.recv())["message"]
    assert (frame["model"], frame["max_prompt_chars"]) == ("fake-model", 500)
    messages = transcript(frame)
    assert [m["content"] for m in messages if m["role"] == "user"] == ["one", "two", "three"]
    answers = [(m["message_id"], m["status"], m["reason"]) for m in messages if m["role"] == "assistant"]
    assert answers == [(ids[0], "done", "length"), (ids[1], "stopped", "stopped"), (ids[2], "error", "rate_limit")]
    assert messages[1]["content"] == "cut short"

    fake_openai.push(Reply(chunks=["ok"]))
    await alice.perform(room("alice"), "send_message", user_content="four")
    await read_answer(alice, room("alice"))
    sent = fake_openai.requests[-1].messages  # the 10-token memory: the latest answered turn, no marks
    assert sent[-1] == {"role": "user", "content": "four"}
    assert all(set(m) == {"role", "content"} for m in sent) and "three" not in [m["content"] for m in sent]


async def test_the_transcript_keeps_more_turns_than_the_model_remembers(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """history_messages=2 bounds the memory sent upstream; transcript_messages=6 what `history` shows."""
    chat = await start_chat(serve, fake_openai, history_messages=2, transcript_messages=6)
    alice = await chat.user("alice")
    for n in range(5):
        await alice.perform(room("alice"), "send_message", user_content=f"q{n}")
        await read_answer(alice, room("alice"))
    assert [m["content"] for m in fake_openai.requests[-1].messages] == ["q3", Reply().text, "q4"]
    await alice.perform(room("alice"), "history")
    assert [m["content"] for m in transcript((await alice.recv())["message"]) if m["role"] == "user"] == ["q2", "q3", "q4"]


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_a_request_sent_again_is_the_same_answer(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer, store: str
) -> None:
    """The start frame carries the request_id; the same request sent again while the answer runs, or
    after it ended, starts nothing and replays that answer to the sender; a new id is a new answer."""
    options: dict[str, Any] = {"history_url": redis_server.url, "history_prefix": "again"} if store == "redis" else {}
    chat = await start_chat(serve, fake_openai, **options)
    tab, other = await chat.user("alice"), await chat.user("alice")
    fake_openai.push(Reply(chunks=[f"t{k} " for k in range(30)], delay=0.02))
    await tab.perform(room("alice"), "send_message", user_content="hi", request_id="req-1")
    start = (await tab.recv())["message"]
    assert (start["event"], start["request_id"], start["seq"]) == ("start", "req-1", 0)
    await other.perform(room("alice"), "send_message", user_content="hi", request_id="req-1")  # while it runs
    frames = [(await other.recv(5))["message"] for _ in range(3)]
    assert {f["message_id"] for f in frames} == {start["message_id"]}
    assert {f["event"] for f in frames} <= {"start", "delta"}, frames
    whole = await read_answer(tab, room("alice"))
    await read_answer(other, room("alice"))

    await other.perform(room("alice"), "send_message", user_content="hi", request_id="req-1")  # after it ended
    replay = await read_answer(other, room("alice"))
    assert all(f["replay"] for f in replay.frames) and replay.frames[0] == {**start, "replay": True}
    assert replay.text == whole.text and len(fake_openai.requests) == 1
    await tab.expect_silence(0.2)  # the replay went to the one who asked

    await tab.perform(room("alice"), "send_message", user_content="hi", request_id="req-2")
    assert (await read_answer(tab, room("alice"))).frames[0]["request_id"] == "req-2"
    assert len(fake_openai.requests) == 2


async def test_a_refused_request_names_its_request_id(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A refusal (here a question over max_prompt_chars) carries the request_id, so the screen knows
    which message was not sent."""
    chat = await start_chat(serve, fake_openai, max_prompt_chars=10)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="x" * 11, request_id="req-9")
    error = (await alice.recv())["message"]
    assert (error["event"], error["request_id"], error["error"]["category"]) == ("error", "req-9", "invalid_request")


async def test_shutdown_ends_each_answer_with_stopped_before_the_restart_notice(
    serve: ServerFactory, fake_openai: FakeOpenAI
) -> None:
    """SIGTERM (uvicorn's shutdown): the screens get `stopped` (reason `shutdown`), then
    `disconnect` with `server_restart`; the stopped turn is in the transcript."""
    chat = await start_chat(serve, fake_openai)
    alice = await chat.user("alice")
    fake_openai.push(SLOW)
    await alice.perform(room("alice"), "send_message", user_content="long one")
    await fake_openai.wait_for_requests(1)
    stopping = asyncio.ensure_future(chat.server.stop())
    answer = await read_answer(alice, room("alice"), timeout=5)
    assert (answer.last["event"], answer.last["reason"]) == ("stopped", "shutdown")
    assert await alice.recv() == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
    await stopping
    [question, turn] = await chat.service.history.transcript("gpt_chat:alice")
    assert (question["content"], turn["status"], turn["reason"]) == ("long one", "stopped", "shutdown")


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_reset_forgets_the_last_answer_too(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer, store: str
) -> None:
    """After reset, a page that loads (history, then resume of the latest answer) finds nothing:
    the answer is not brought back by its kept frames; resuming it by id says expired."""
    options: dict[str, Any] = {"history_url": redis_server.url, "history_prefix": "forget"} if store == "redis" else {}
    chat = await start_chat(serve, fake_openai, **options)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    message_id = (await read_answer(alice, room("alice"))).frames[0]["message_id"]
    await alice.perform(room("alice"), "reset")
    assert (await alice.recv())["message"] == {"content": "", "event": "reset"}
    await alice.perform(room("alice"), "resume")
    await alice.expect_silence(0.3)
    await alice.perform(room("alice"), "resume", message_id=message_id, after_seq=-1)
    assert (await alice.recv())["message"] == {"content": "", "event": "expired", "message_id": message_id}
    await alice.perform(room("alice"), "history")
    assert transcript((await alice.recv())["message"]) == []


async def test_a_lone_surrogate_cannot_poison_a_rooms_transcript(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A question holding "\\ud800" (no character: it could never be encoded again) is refused as
    malformed; the room's history and resume go on working."""
    chat = await start_chat(serve, fake_openai)
    alice = await chat.user("alice")
    data = r'{"action":"send_message","user_content":"hi \ud800 there","request_id":"\udfff"}'
    await alice.send({"command": "message", "identifier": room("alice"), "data": data})
    await alice.expect_silence(0.3)
    assert fake_openai.requests == []
    await alice.perform(room("alice"), "send_message", user_content="fine")
    await read_answer(alice, room("alice"))
    await alice.perform(room("alice"), "history")
    assert transcript((await alice.recv())["message"])[0]["content"] == "fine"


async def test_one_history_frame_carries_the_latest_turns_within_its_size(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Questions of 3,000 '<' (18 kB each once escaped as Rails does) with history_frame_bytes=50 kB:
    the history frame holds the latest that fit, says it is truncated, and stays under the bound."""
    chat = await start_chat(serve, fake_openai, history_frame_bytes=50_000)
    alice = await chat.user("alice")
    for n in range(6):
        await alice.perform(room("alice"), "send_message", user_content=f"{n}" + "<" * 3_000)
        await read_answer(alice, room("alice"))
    await alice.perform(room("alice"), "history")
    frame = (await alice.recv())["message"]
    questions = [m["content"][0] for m in transcript(frame) if m["role"] == "user"]
    assert frame["truncated"] is True and questions == ["4", "5"]
    assert len(json.dumps(frame["messages"])) < 50_000


async def test_a_request_id_that_is_not_a_short_string_is_refused(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A request_id the server cannot echo (a number, an object, "", over 100 characters) would
    leave the client unable to recognise its answer: refused, nothing started."""
    chat = await start_chat(serve, fake_openai)
    alice = await chat.user("alice")
    for request_id in (42, {}, "", "r" * 101):
        await alice.perform(room("alice"), "send_message", user_content="hi", request_id=request_id)
        error = (await alice.recv())["message"]
        assert (error["event"], error["error"]["category"]) == ("error", "invalid_request")
    assert fake_openai.requests == []
