"""GptChatChannel when things go wrong or get busy: errors, stop, busy, queueing, users leaving."""

from __future__ import annotations

import asyncio
import socket

import pytest

from cable_server.testing import FakeOpenAI, Reply
from protocol_tests.client import assert_usable

from .chat_helpers import read_answer, room, start_chat
from .conftest import ServerFactory

SLOW = Reply(chunks=[f"t{k} " for k in range(200)], delay=0.02)


async def test_the_providers_message_is_logged_and_sent_only_when_exposed(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 whose message names the key: in the server's log always; in the error frame (which
    every reader of the room gets) only with expose_provider_errors."""
    leak = "Incorrect API key provided: sk-test-****1234."
    for expose in (False, True):
        chat = await start_chat(serve, fake_openai, expose_provider_errors=expose)
        fake_openai.push(Reply.error(401, leak, "invalid_api_key"))
        alice = await chat.user("alice")
        await alice.perform(room("alice"), "send_message", user_content="hi")
        message = (await read_answer(alice, room("alice"))).last["error"]["message"]
        assert (leak in message) is expose, message
    assert sum(leak in record.getMessage() for record in caplog.records) == 2


@pytest.mark.parametrize(
    ("reply", "category"),
    [
        (Reply.error(401, "Incorrect API key provided: sk-test.", "invalid_api_key"), "auth"),
        (Reply.error(403, "Project does not have access.", "model_not_found"), "auth"),
        (Reply.error(429, "Rate limit reached for requests.", "rate_limit_exceeded"), "rate_limit"),
        (Reply.error(400, "This model's maximum context length is 8192 tokens.", "context_length_exceeded"), "bad_request"),
        (Reply.error(404, "The model `fake-model` does not exist.", "model_not_found"), "bad_request"),
        (Reply.error(500, "The server had an error while processing your request."), "upstream"),
        (Reply.error(503, "The engine is currently overloaded."), "upstream"),
        (Reply(headers_delay=1.0), "timeout"),
        (Reply(stall_after=2), "stalled"),
        (Reply(cut_after=2), "connection"),
        (Reply(garbage_after=2), "protocol"),
    ],
    ids=["401", "403", "429", "400", "404", "500", "503", "slow-start", "stall", "reset", "malformed"],
)
async def test_upstream_failures_become_an_error_frame_with_a_category(
    serve: ServerFactory, fake_openai: FakeOpenAI, reply: Reply, category: str
) -> None:
    """The answer ends with {event: error, error: {category, message}}; the connection lives on."""
    chat = await start_chat(serve, fake_openai, first_token_timeout=0.4, stall_timeout=0.4)
    fake_openai.push(reply)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    answer = await read_answer(alice, room("alice"))
    error = answer.last
    assert error["event"] == "error" and error["content"] == ""
    assert error["error"]["category"] == category
    assert isinstance(error["error"]["message"], str) and error["error"]["message"]
    if reply.status != 200:  # what the provider said can name keys and hosts: it is not sent
        assert reply.error_message not in error["error"]["message"]
    await alice.perform(room("alice"), "send_message", user_content="again")
    assert (await read_answer(alice, room("alice"))).last["event"] == "done"
    await assert_usable(alice)


async def test_a_failing_answer_does_not_disturb_another_users_answer(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Bob's upstream is cut mid-answer; Alice's answer, streaming at the same time, is whole."""
    chat = await start_chat(serve, fake_openai)
    alice_reply = Reply(chunks=[f"a{k} " for k in range(30)], delay=0.01)
    fake_openai.push(alice_reply, Reply(chunks=["b"] * 30, delay=0.01, cut_after=5))
    alice, bob = await chat.user("alice"), await chat.user("bob")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await fake_openai.wait_for_requests(1)
    await bob.perform(room("bob"), "send_message", user_content="hi")
    alice_answer, bob_answer = await asyncio.gather(read_answer(alice, room("alice")), read_answer(bob, room("bob")))
    assert alice_answer.text == alice_reply.text and alice_answer.last["event"] == "done"
    assert bob_answer.last["error"]["category"] == "connection"


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_a_provider_refusing_connections_is_a_connection_error(
    serve: ServerFactory, fake_openai: FakeOpenAI, transport: str
) -> None:
    """Nothing listens at the base URL: `connection` on both SDK transports (the aiohttp adapter
    reports a refusal as a connect timeout; it is not one)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    chat = await start_chat(serve, fake_openai, http_client=transport, base_url=f"http://127.0.0.1:{closed}/v1")
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    error = (await read_answer(alice, room("alice"))).last
    assert (error["event"], error["error"]["category"]) == ("error", "connection")


async def test_the_sdk_retries_before_the_first_token(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A 500 before any token is retried by the SDK (max_retries); the user sees one clean answer."""
    chat = await start_chat(serve, fake_openai, max_retries=1)
    fake_openai.push(Reply.error(500, "try again"), Reply())
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    answer = await read_answer(alice, room("alice"), timeout=10)
    assert answer.events() == ["start", "delta", "delta", "delta", "delta", "done"]
    assert len(fake_openai.requests) == 2


async def test_no_retry_once_a_token_was_sent(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A cut after the first token is an error, never a second request that would repeat text."""
    chat = await start_chat(serve, fake_openai, max_retries=2)
    fake_openai.push(Reply(cut_after=2))
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    answer = await read_answer(alice, room("alice"))
    assert answer.text == "Hello," and answer.last["event"] == "error"
    await alice.expect_silence(0.5)
    assert len(fake_openai.requests) == 1


async def test_stop_ends_the_answer_and_closes_the_upstream_stream(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """stop: a stopped frame at once, the provider sees its HTTP stream closed, the partial is kept."""
    chat = await start_chat(serve, fake_openai)
    fake_openai.push(SLOW)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="long story")
    start = (await alice.recv())["message"]
    for _ in range(3):
        assert (await alice.recv())["message"]["event"] == "delta"
    await alice.perform(room("alice"), "stop", message_id=start["message_id"])
    rest = await read_answer(alice, room("alice"))
    assert rest.last == {
        "content": "",
        "event": "stopped",
        "message_id": start["message_id"],
        "seq": rest.last["seq"],
        "reason": "stopped",
    }
    upstream = fake_openai.requests[0]
    await asyncio.wait_for(upstream.ended.wait(), 2)
    assert upstream.closed_early and upstream.sent < len(SLOW.chunks)

    partial = "".join(SLOW.chunks[: 3 + len(rest.frames) - 1])
    await alice.perform(room("alice"), "send_message", user_content="go on")
    await read_answer(alice, room("alice"))
    assert fake_openai.requests[1].messages[1] == {"role": "assistant", "content": partial}


async def test_stop_with_another_message_id_changes_nothing(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """A stale Stop (an older message_id) does not end the current answer."""
    chat = await start_chat(serve, fake_openai)
    fake_openai.push(Reply(chunks=["x"] * 10, delay=0.02))
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await alice.perform(room("alice"), "stop", message_id="msg_old")
    assert (await read_answer(alice, room("alice"))).last["event"] == "done"


async def test_stop_right_after_send_message(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """send_message and stop in the same breath: start then stopped, and no upstream request is left open."""
    chat = await start_chat(serve, fake_openai)
    fake_openai.push(SLOW)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await alice.perform(room("alice"), "stop")
    answer = await read_answer(alice, room("alice"))
    assert answer.events() == ["start", "stopped"]
    await alice.perform(room("alice"), "send_message", user_content="hi")
    assert (await read_answer(alice, room("alice"))).last["event"] == "done"


async def test_a_second_message_while_answering_is_refused_as_busy(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """One answer per room: the sender alone gets a busy error naming the running answer."""
    chat = await start_chat(serve, fake_openai)
    fake_openai.push(Reply(chunks=["x"] * 20, delay=0.02))
    alice, other_tab = await chat.user("alice"), await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="first")
    start = (await alice.recv())["message"]
    await alice.perform(room("alice"), "send_message", user_content="second")
    frames = (await read_answer(alice, room("alice"))).frames
    busy = [f for f in frames if f["event"] == "error"]
    assert busy == [
        {
            "content": "",
            "event": "error",
            "message_id": start["message_id"],
            "error": {"category": "busy", "message": busy[0]["error"]["message"]},
        }
    ]
    assert frames[-1]["event"] == "done" or (await read_answer(alice, room("alice"))).last["event"] == "done"
    other = await read_answer(other_tab, room("alice"))
    assert "busy" not in str(other.frames)
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize("user_content", ["", "   ", None, 42, "x" * 101])
async def test_invalid_prompts_are_refused_before_reaching_the_model(
    serve: ServerFactory, fake_openai: FakeOpenAI, user_content: object
) -> None:
    """Empty, missing, non-text or too long user_content: an invalid_request error, no upstream call."""
    chat = await start_chat(serve, fake_openai, max_prompt_chars=100)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content=user_content)
    frame = (await alice.recv())["message"]
    assert frame["event"] == "error" and frame["error"]["category"] == "invalid_request" and frame["content"] == ""
    assert fake_openai.requests == []


async def test_requests_beyond_the_pool_wait_in_line_and_are_told_their_place(
    serve: ServerFactory, fake_openai: FakeOpenAI
) -> None:
    """max_concurrent=1: the 2nd and 3rd users get queued frames (2, then 1) and are served in order."""
    chat = await start_chat(serve, fake_openai, max_concurrent=1)
    fake_openai.default = Reply(chunks=["x"] * 10, delay=0.02)
    users = ["u1", "u2", "u3"]
    clients = [await chat.user(name) for name in users]
    for name, client in zip(users, clients, strict=True):
        await client.perform(room(name), "send_message", user_content=name)
        await asyncio.sleep(0.02)
    answers = await asyncio.gather(*(read_answer(c, room(n)) for n, c in zip(users, clients, strict=True)))
    positions = [[f["position"] for f in a.frames if f["event"] == "queued"] for a in answers]
    assert positions == [[], [1], [2, 1]]
    assert all(a.last["event"] == "done" and a.text == "x" * 10 for a in answers)
    assert [r.messages[-1]["content"] for r in fake_openai.requests] == users


async def test_a_full_waiting_line_answers_overloaded(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """max_concurrent=1, max_queued=0: a second user is told to come back, at once."""
    chat = await start_chat(serve, fake_openai, max_concurrent=1, max_queued=0)
    fake_openai.default = Reply(chunks=["x"] * 10, delay=0.02)
    alice, bob = await chat.user("alice"), await chat.user("bob")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await fake_openai.wait_for_requests(1)
    await bob.perform(room("bob"), "send_message", user_content="hi")
    assert (await read_answer(bob, room("bob"))).last["error"]["category"] == "overloaded"
    assert (await read_answer(alice, room("alice"))).last["event"] == "done"


async def test_the_last_subscriber_leaving_cancels_the_generation(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """orphan_grace=0: closing the only tab mid-answer closes the upstream stream; a second tab keeps it alive."""
    chat = await start_chat(serve, fake_openai, orphan_grace=0)
    fake_openai.push(SLOW, SLOW)
    alice, second_tab = await chat.user("alice"), await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await alice.recv()
    await alice.close()
    await asyncio.sleep(0.2)
    assert not fake_openai.requests[0].ended.is_set()  # the second tab still listens
    await second_tab.unsubscribe(room("alice"))
    await asyncio.wait_for(fake_openai.requests[0].ended.wait(), 2)
    assert fake_openai.requests[0].closed_early
    assert chat.service.active == {}


async def test_a_grace_period_keeps_the_generation_for_a_returning_user(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """orphan_grace: a user who comes back within it finds the answer still being written."""
    chat = await start_chat(serve, fake_openai, orphan_grace=0.5)
    fake_openai.push(Reply(chunks=[f"t{k} " for k in range(40)], delay=0.02))
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await alice.recv()
    await alice.close()
    back = await chat.user("alice")
    assert (await read_answer(back, room("alice"))).last["event"] == "done"


async def test_server_shutdown_ends_generations_cleanly(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Stopping the server mid-answer: clients are told server_restart; the upstream stream is closed."""
    chat = await start_chat(serve, fake_openai)
    fake_openai.push(SLOW)
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await alice.recv()
    await chat.server.stop()
    await asyncio.wait_for(fake_openai.requests[0].ended.wait(), 2)
    assert fake_openai.requests[0].closed_early
    assert chat.service.active == {}
