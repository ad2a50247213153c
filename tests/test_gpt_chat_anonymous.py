"""GptChatChannel without identity (the blog's backend): a subscription acts on its own room only.

The Rails original streamed into whichever room ``user_id`` named, so any client could pour text
into anyone's screen. Here an anonymous subscription starts, stops, resets, resumes and reads
only the room it joined; a ``user_id`` naming another room gets a ``forbidden`` error frame,
to the sender alone. Raw sockets, real server, real openai SDK, fake upstream.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from cable_server import Settings
from cable_server.demo import create_app
from cable_server.llm import ChatSettings
from cable_server.testing import FakeOpenAI, RedisServer, Reply
from protocol_tests.client import CableClient, assert_usable

from .chat_helpers import ChatHarness, read_answer, room, start_chat, transcript
from .conftest import ServerFactory

pytestmark = pytest.mark.both_backends

SLOW = Reply(chunks=[f"a{k} " for k in range(30)], delay=0.03)


async def alice_and_mallory(chat: ChatHarness) -> tuple[CableClient, CableClient]:
    """Two anonymous clients: alice in room 4242 (a number, as the blog sends it), mallory in "31337"."""
    return await chat.user(None, subscribe=4242), await chat.user(None, subscribe="31337")


def forbidden(frame: dict[str, Any]) -> None:
    assert frame == {
        "identifier": room("31337"),
        "message": {
            "content": "",
            "event": "error",
            "error": {
                "category": "forbidden",
                "message": "user_id names another room than the one this subscription joined; nothing was sent.",
            },
        },
    }


async def test_the_blogs_calls_stream_into_the_room_user_id_names(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """room and user_id as a number or a string, or no user_id: the answer streams into public_<room>."""
    chat = await start_chat(serve, fake_openai)
    for subscribed, user_id in ((42, 42), (42, "42"), ("43", 43), ("44", None)):
        client = await chat.user(None, subscribe=subscribed)
        data = {"user_content": "hi", "system_content": "Be brief."} | ({"user_id": user_id} if user_id else {})
        await client.perform(room(subscribed), "send_message", **data)
        assert (await read_answer(client, room(subscribed))).text == Reply().text
    assert len(fake_openai.requests) == 4


async def test_a_user_id_naming_another_room_is_refused_to_the_sender_alone(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """mallory (room 31337) sends user_id 4242: a forbidden error to her; alice hears nothing, the model
    is not called, a warning is logged; both connections go on."""
    chat = await start_chat(serve, fake_openai)
    alice, mallory = await alice_and_mallory(chat)
    with caplog.at_level(logging.WARNING, "cable_server"):
        for user_id in (4242, "4242", "public_4242", 4242.0, {"id": 4242}, [4242], ""):
            await mallory.perform(room("31337"), "send_message", user_content="Write into alice's screen", user_id=user_id)
            forbidden(await mallory.recv())
    await alice.expect_silence(0.3)
    assert fake_openai.requests == []
    refusals = [r for r in caplog.records if "send_message refused" in r.getMessage()]
    assert len(refusals) == 7 and all(r.levelno == logging.WARNING for r in refusals)
    assert "public_31337" in refusals[0].getMessage()
    await assert_usable(alice)
    await mallory.perform(room("31337"), "send_message", user_content="My own question", user_id=31337)
    assert (await read_answer(mallory, room("31337"))).last["event"] == "done"


async def test_anonymous_clients_cannot_stop_reset_resume_or_read_each_others_answer(
    serve: ServerFactory, fake_openai: FakeOpenAI
) -> None:
    """While alice's answer streams, mallory's stop (with alice's message_id), reset, resume and history
    reach her own room only: alice's answer finishes whole and her conversation is kept."""
    chat = await start_chat(serve, fake_openai)
    alice, mallory = await alice_and_mallory(chat)
    fake_openai.push(SLOW)
    await alice.perform(room(4242), "send_message", user_content="My bank PIN is 4321, remember it.", user_id=4242)
    start = (await alice.recv())["message"]
    message_id = start["message_id"]

    await mallory.perform(room("31337"), "stop", message_id=message_id)
    await mallory.perform(room("31337"), "stop")
    await mallory.perform(room("31337"), "reset")
    assert (await mallory.recv())["message"] == {"content": "", "event": "reset"}  # her own room's reset
    await mallory.perform(room("31337"), "resume", message_id=message_id, after_seq=-1)
    assert (await mallory.recv())["message"] == {"content": "", "event": "expired", "message_id": message_id}
    await mallory.perform(room("31337"), "history")
    assert transcript((await mallory.recv())["message"]) == []
    await mallory.expect_silence(0.3)

    answer = await read_answer(alice, room(4242), timeout=10)
    assert answer.last["event"] == "done" and start["content"] + answer.text == SLOW.text
    await alice.perform(room(4242), "history")
    question, answer_turn = transcript((await alice.recv())["message"])
    assert question == {"role": "user", "content": "My bank PIN is 4321, remember it."}
    assert answer_turn == {
        "role": "assistant",
        "content": SLOW.text,
        "message_id": start["message_id"],
        "status": "done",
        "reason": "stop",
    }


async def test_a_room_id_is_a_capability(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Without identity whoever joins a room shares it (the README says so): two clients in room 7 both
    see one answer, and either may stop it."""
    chat = await start_chat(serve, fake_openai)
    first, second = await chat.user(None, subscribe=7), await chat.user(None, subscribe="7")
    fake_openai.push(SLOW)
    await first.perform(room(7), "send_message", user_content="hi", user_id=7)
    assert (await second.recv())["message"]["event"] == "start"
    await second.perform(room("7"), "stop")
    assert (await read_answer(first, room(7))).last["event"] == "stopped"


async def test_the_demo_serves_anonymous_clients_and_keeps_named_ones_to_their_room(
    serve: ServerFactory, fake_openai: FakeOpenAI
) -> None:
    """`cable-server`'s demo app: no ?name= is anonymous (room 42 is confirmed, as the blog needs);
    ?name=alice is a guest (signed cookie) whose room 42 is her own, not the anonymous public_42."""
    cable = create_app(ChatSettings(api_key="sk-test", base_url=fake_openai.url, max_retries=0))
    cable.settings = Settings(shutdown_timeout=1.0)
    server = await serve(cable)
    anonymous = await server.client()
    await anonymous.subscribe(room(42))
    await anonymous.perform(room(42), "send_message", user_content="hi", user_id=42)
    assert (await read_answer(anonymous, room(42))).text == Reply().text

    alice = await server.client("?name=alice")
    await alice.subscribe(room(42))
    await alice.perform(room(42), "history")
    assert transcript((await alice.recv())["message"]) == []  # not the anonymous room's conversation
    await alice.perform(room(42), "send_message", user_content="hi", user_id=7)  # ignored: identity decides
    assert (await read_answer(alice, room(42))).last["event"] == "done"
    await anonymous.expect_silence(0.3)


async def test_an_anonymous_client_cannot_join_a_named_users_room(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """The demo serves both kinds: an anonymous subscription to room "alice" is a different room from
    the guest ?name=alice's own (gpt_chat:<guest>/alice), so it sees, stops, reads and resets nothing of hers."""
    cable = create_app(ChatSettings(api_key="sk-test", base_url=fake_openai.url, max_retries=0))
    cable.settings = Settings(shutdown_timeout=1.0)
    server = await serve(cable)
    alice = await server.client("?name=alice")
    await alice.subscribe(room("alice"))
    intruder = await server.client()
    await intruder.subscribe(room("alice"))
    fake_openai.push(SLOW)
    await alice.perform(room("alice"), "send_message", user_content="alice private question")
    start = (await alice.recv())["message"]
    for action, data in (("stop", {"message_id": start["message_id"]}), ("history", {}), ("reset", {})):
        await intruder.perform(room("alice"), action, **data)
    assert transcript((await intruder.recv())["message"]) == []
    assert (await intruder.recv())["message"] == {"content": "", "event": "reset"}
    await intruder.expect_silence(0.3)
    answer = await read_answer(alice, room("alice"), timeout=10)
    assert answer.last["event"] == "done" and start["content"] + answer.text == SLOW.text
    await alice.perform(room("alice"), "history")
    assert (await alice.recv())["message"]["messages"][0] == {"role": "user", "content": "alice private question"}


async def test_user_id_is_compared_with_the_room_as_named(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """In a room literally named "None", an empty or non-scalar user_id is still another room."""
    chat = await start_chat(serve, fake_openai)
    client = await chat.user(None, subscribe="None")
    for user_id in ("", [], {}):
        await client.perform(room("None"), "send_message", user_content="hi", user_id=user_id)
        assert (await client.recv())["message"]["error"]["category"] == "forbidden"
    assert fake_openai.requests == []


async def test_owner_and_helpers_are_not_actions(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """`owner`, `identified`, `chat` and the private helpers cannot be performed by a client."""
    chat = await start_chat(serve, fake_openai)
    client = await chat.user(None, subscribe=5)
    for action in ("owner", "identified", "chat", "_requester", "_check_user_id"):
        await client.perform(room(5), action)
    await client.expect_silence(0.3)
    unknown = [r for r in caplog.records if "action" in r.getMessage() and r.levelno >= logging.INFO]
    assert len(unknown) == 5, [r.getMessage() for r in caplog.records]
    await assert_usable(client)


@pytest.mark.parametrize("store", ["memory", "redis"])
async def test_history_messages_zero_remembers_nothing(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer, store: str
) -> None:
    """CABLE_LLM_HISTORY_MESSAGES=0, as the Rails original: no turn reaches the next question or `history`."""
    options: dict[str, Any] = {"history_url": redis_server.url, "history_prefix": "nomemory"} if store == "redis" else {}
    chat = await start_chat(serve, fake_openai, history_messages=0, **options)
    client = await chat.user(None, subscribe=42)
    for question in ("first", "second"):
        await client.perform(room(42), "send_message", user_content=question, user_id=42)
        await read_answer(client, room(42))
    assert fake_openai.requests[1].messages == [{"role": "user", "content": "second"}]
    await client.perform(room(42), "history")
    assert (await client.recv())["message"]["messages"] == []


async def test_a_room_name_cannot_forge_log_lines(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A room named with a newline and 900 characters, refused and answered: every log line about it
    is short and on one line."""
    chat = await start_chat(serve, fake_openai)
    name = "x\n2026-11-29 CRITICAL cable_server.auth: FORGED" + "A" * 900
    client = await chat.user(None, subscribe=name)
    caplog.set_level(logging.INFO, logger="cable_server")
    await client.perform(room(name), "send_message", user_content="hi", user_id="elsewhere")
    await client.perform(room(name), "send_message", user_content="q" * 40_000, user_id=name)
    await client.perform(room(name), "send_message", user_content="hi", user_id=name)
    await read_answer(client, room(name))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("cable_server")]
    assert any("FORGED" in line for line in lines)
    assert all("\n" not in line and len(line) < 1_000 for line in lines)
