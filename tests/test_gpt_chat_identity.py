"""GptChatChannel on identified connections: identity fails closed.

An app whose ``connect`` loads a user model (a UUID ``id``, as SQLAlchemy and Django give) binds
each room to its user; an identity that gives no room name refuses the subscription and says so
in the log, instead of falling back to the anonymous rules where the client picks the room.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from cable_server import CableServer, Connection, Settings, TokenAuth, TokenConnection, issue_token
from cable_server.channels import GptChatChannel
from cable_server.llm import ChatService, ChatSettings
from cable_server.testing import FakeOpenAI, Reply

from .chat_helpers import read_answer, room
from .conftest import RunningServer, ServerFactory

SECRET = "identity-" + "k" * 40


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    name: str


USERS = {name: User(uuid.uuid4(), name) for name in ("alice", "mallory")}


class ModelConnection(TokenConnection):
    """The documented API: a token, then the user model it names."""

    identified_by = ("current_user",)
    token_auth = TokenAuth(secret=SECRET)

    async def connect(self) -> None:
        await super().connect()
        self.current_user = USERS[self.token_claims["sub"]]


class OddIdentityConnection(Connection):
    """An app whose identity is something no room can be named after (from ``?kind=``)."""

    identified_by = ("current_user",)

    async def connect(self) -> None:
        kind = self.request.query_params.get("kind")
        odd: dict[str, object] = {"empty": "", "false": False, "dict": {"id": 1}, "model-without-id": User(None, "x")}  # type: ignore[arg-type]
        self.current_user = odd[kind]


async def serve_chat(serve: ServerFactory, fake: FakeOpenAI, connection: type[Connection]) -> RunningServer:
    cable = CableServer(connection_class=connection, channels=[GptChatChannel], settings=Settings(shutdown_timeout=1.0))
    ChatService.install(cable, ChatSettings(api_key="sk-test", base_url=fake.url, max_retries=0))
    return await serve(cable)


def token(name: str) -> str:
    return "?token=" + issue_token(SECRET, name, expires_in=300)


async def test_a_user_model_with_a_uuid_id_owns_the_room_of_that_uuid(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """alice's room is her UUID; mallory asking for it is rejected, even with alice's user_id in the data."""
    server = await serve_chat(serve, fake_openai, ModelConnection)
    alice_room, mallory_room = (str(USERS[name].id) for name in ("alice", "mallory"))
    alice = await server.client(token("alice"))
    await alice.subscribe(room(alice_room))
    await alice.perform(room(alice_room), "send_message", user_content="My bank PIN is 4321.")
    assert (await read_answer(alice, room(alice_room))).text == Reply().text

    mallory = await server.client(token("mallory"))
    await mallory.subscribe(room(alice_room), confirm=False)
    assert await mallory.recv() == {"identifier": room(alice_room), "type": "reject_subscription"}
    await mallory.subscribe(room(mallory_room))
    await mallory.perform(room(mallory_room), "send_message", user_content="hi", user_id=alice_room)
    assert (await read_answer(mallory, room(mallory_room))).last["event"] == "done"
    await mallory.perform(room(mallory_room), "history")
    history: Any = (await mallory.recv())["message"]["messages"]
    assert "4321" not in str(history)
    await alice.expect_silence(0.3)


@pytest.mark.parametrize("kind", ["empty", "false", "dict", "model-without-id"])
async def test_an_identity_that_names_no_room_refuses_every_subscription(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Identified, but no room can be derived: every subscription is rejected and logged at error,
    never served by the anonymous rules (where the client names the room)."""
    server = await serve_chat(serve, fake_openai, OddIdentityConnection)
    client = await server.client(f"?kind={kind}")
    for requested in (42, "alice"):
        await client.subscribe(room(requested), confirm=False)
        assert await client.recv() == {"identifier": room(requested), "type": "reject_subscription"}
    errors = [r for r in caplog.records if r.levelno == logging.ERROR and "GptChatChannel refused" in r.getMessage()]
    assert len(errors) == 2
