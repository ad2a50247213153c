"""A GptChatChannel server in front of the fake OpenAI server, and a client that reads answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cable_server import CableServer, Settings
from cable_server.channels import GptChatChannel
from cable_server.llm import ChatService, ChatSettings
from cable_server.testing import FakeOpenAI, Reply
from protocol_tests.client import CableClient, ident

from .conftest import RunningServer, ServerFactory
from .fixture_app import EchoChannel, FixtureConnection

TERMINAL = {"done", "error", "stopped"}


def room(value: Any) -> str:
    return ident("GptChatChannel", room=value)


@dataclass
class Answer:
    frames: list[dict[str, Any]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(frame["content"] for frame in self.frames)

    @property
    def last(self) -> dict[str, Any]:
        return self.frames[-1]

    def events(self) -> list[str]:
        return [frame["event"] for frame in self.frames]


async def read_answer(client: CableClient, identifier: str, timeout: float = 5.0) -> Answer:
    """Frames of ``identifier`` up to and including a done/error/stopped frame."""
    answer = Answer()
    while True:
        frame = await client.recv(timeout)
        assert frame.get("identifier") == identifier, frame
        message = frame["message"]
        answer.frames.append(message)
        if message.get("event") in TERMINAL:
            return answer


@dataclass
class ChatHarness:
    server: RunningServer
    fake: FakeOpenAI
    service: ChatService

    async def user_client(self, name: str) -> CableClient:
        """A connection identified as ``name``, not yet subscribed."""
        return await self.server.client(f"?user={name}")

    async def user(self, name: str | None, *, subscribe: Any = ..., confirm: bool = True) -> CableClient:
        """A connection identified as ``name`` (anonymous when None), subscribed to its room."""
        client = await self.server.client(f"?user={name}" if name else "")
        target = name if subscribe is ... else subscribe
        if target is not None:
            await client.subscribe(room(target), confirm=confirm)
        return client


def transcript(frame: dict[str, Any]) -> list[dict[str, str]]:
    """The messages of a ``history`` frame (which also says the model and the prompt limit)."""
    assert frame["event"] == "history" and frame["content"] == "", frame
    messages: list[dict[str, str]] = frame["messages"]
    return messages


#: No model budget over time, no limit on room visits and no per-address share of the pool, for
#: the tests that load one server with many answers from one address (the limits' own tests run
#: on their defaults).
UNBUDGETED: dict[str, Any] = {
    **{f"{measure}_per_minute{per}": 0 for measure in ("requests", "tokens") for per in ("", "_per_user", "_per_address")},
    "room_visits_per_minute_per_connection": 0,
    "room_visits_per_minute_per_address": 0,
    "max_concurrent_per_address": 0,
    "max_queued_per_address": 0,
}


def chat_app(fake: FakeOpenAI, **settings: Any) -> tuple[CableServer, ChatService]:
    cable = CableServer(
        connection_class=FixtureConnection,
        channels=[GptChatChannel, EchoChannel],
        settings=Settings(ping_interval=30, shutdown_timeout=1.0),
    )
    options: dict[str, Any] = {"api_key": "sk-test", "base_url": fake.url, "max_retries": 0, "model": "fake-model"}
    service = ChatService.install(cable, ChatSettings(**{**options, **settings}))
    return cable, service


async def start_chat(serve: ServerFactory, fake: FakeOpenAI, **settings: Any) -> ChatHarness:
    cable, service = chat_app(fake, **settings)
    return ChatHarness(await serve(cable), fake, service)


class Assembled:
    """Frames kept by message_id and seq, as a resuming client keeps them (duplicates collapse)."""

    def __init__(self) -> None:
        self.frames: dict[str, dict[int, dict[str, Any]]] = {}

    def add(self, message: dict[str, Any]) -> None:
        if "message_id" in message and "seq" in message:
            kept = self.frames.setdefault(message["message_id"], {})
            assert kept.setdefault(message["seq"], message)["content"] == message["content"], "a replay differs from the original"

    def last_seq(self, message_id: str) -> int:
        seq = -1
        while seq + 1 in self.frames.get(message_id, {}):
            seq += 1
        return seq

    def finished(self, message_id: str) -> bool:
        last = self.last_seq(message_id)
        return last >= 0 and self.frames[message_id][last]["event"] in TERMINAL

    def text(self, message_id: str) -> str:
        return "".join(self.frames[message_id][seq]["content"] for seq in range(self.last_seq(message_id) + 1))


def script(request: Any) -> Reply:
    """The question names the answer: 'q<n>' gets 20 chunks 'q<n>.<k> ' at a brisk pace."""
    name = request.messages[-1]["content"]
    return Reply(chunks=[f"{name}.{k} " for k in range(20)], delay=0.002)
