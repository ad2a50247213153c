"""Conversation per room, behind a seam like the pub/sub one so Redis can hold it too.

A room keeps its *transcript*: every turn as the user saw it, the assistant's marked with its
``message_id``, ``status`` (``done``, ``stopped``, ``error``) and ``reason`` (the finish reason,
why it stopped, the error category), bounded by a number of messages. The model is given its
*memory*, derived from it: the most recent answered turns within the message and token bounds,
as plain ``{role, content}`` (a turn that failed before any text is not sent upstream).
"""

from __future__ import annotations

import abc
import collections
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from .. import encoding
from ..redis_client import connect
from .models import Message

__all__ = ["HistoryStore", "MemoryHistory", "RedisHistory", "estimate_tokens", "latest", "memory", "trim"]


def estimate_tokens(message: Message) -> int:
    """About four characters per token, plus the message's framing; no tokenizer needed."""
    return len(message["content"]) // 4 + 4


def trim(messages: Sequence[Message], *, max_messages: int, max_tokens: int) -> list[Message]:
    """The most recent messages that fit both bounds, never starting with an assistant turn."""
    kept: list[Message] = []
    budget = max_tokens
    recent = list(messages)[-max_messages:] if max_messages > 0 else []
    for message in reversed(recent):
        budget -= estimate_tokens(message)
        if budget < 0:
            break
        kept.append(message)
    kept.reverse()
    while kept and kept[0]["role"] == "assistant":
        kept.pop(0)
    return kept


def memory(transcript: Sequence[Message], *, max_messages: int, max_tokens: int) -> list[Message]:
    """What the model is given of a transcript: answered turns as ``{role, content}``, trimmed."""
    answered: list[Message] = []
    for message in transcript:
        if message["role"] == "assistant" and not message["content"]:
            if answered and answered[-1]["role"] == "user":
                answered.pop()  # its question, never answered
            continue
        answered.append({"role": message["role"], "content": message["content"]})
    return trim(answered, max_messages=max_messages, max_tokens=max_tokens)


def latest(transcript: Sequence[Message], max_bytes: int) -> list[Message]:
    """The most recent messages whose frame text fits in ``max_bytes`` (the newest one always):
    what one ``history`` frame may carry, however long the transcript and however its text
    grows when encoded (``<`` becomes six bytes)."""
    kept: list[Message] = []
    size = 0
    for message in reversed(transcript):
        size += len(encoding.dumps_bytes(message))
        if kept and size > max_bytes:
            break
        kept.append(message)
    kept.reverse()
    return kept


class HistoryStore(abc.ABC):
    """The transcript of each room (a room is the stream its answers go to), and the model's memory of it."""

    #: Messages of memory given to the model, and their approximate size in tokens.
    max_messages: int
    max_tokens: int

    async def load(self, room: str) -> list[Message]:
        """The model's memory of the room, oldest first (see :func:`memory`)."""
        return memory(await self.transcript(room), max_messages=self.max_messages, max_tokens=self.max_tokens)

    @abc.abstractmethod
    async def transcript(self, room: str) -> list[Message]:
        """The room's turns as the user saw them, marks included, oldest first."""

    @abc.abstractmethod
    async def append(self, room: str, *messages: Message) -> None:
        """Add turns at the end, forgetting the oldest beyond the store's bounds."""

    @abc.abstractmethod
    async def clear(self, room: str) -> None:
        """Forget the room's conversation."""

    async def close(self) -> None:  # noqa: B027 (in-process stores hold nothing)
        """Release connections; called when the server stops."""


class MemoryHistory(HistoryStore):
    """In-process history, ``keep`` messages per room, and in all at most ``max_bytes`` of text (the
    rooms least recently written are forgotten first) kept ``ttl`` seconds after a room's last
    turn: however many rooms clients open, it holds at most that much. ``max_messages=0`` keeps
    nothing at all (no memory, no transcript: the Rails original)."""

    def __init__(
        self,
        *,
        max_messages: int = 20,
        max_tokens: int = 4_000,
        keep: int = 200,
        max_bytes: int = 32 << 20,
        ttl: float = 86_400,
    ) -> None:
        self.max_messages = max_messages
        self.max_tokens = max_tokens
        self.keep = keep if max_messages > 0 else 0
        self.max_bytes = max_bytes
        self.ttl = ttl
        self._rooms: collections.OrderedDict[str, _Turns] = collections.OrderedDict()  # least recent first
        self.bytes = 0

    async def transcript(self, room: str) -> list[Message]:
        self._expire()
        turns = self._rooms.get(room)
        return list(turns.messages) if turns else []

    async def append(self, room: str, *messages: Message) -> None:
        if self.keep <= 0:
            return
        old = self._rooms.pop(room, None)
        self.bytes -= old.size if old else 0
        kept = [*(old.messages if old else ()), *messages][-self.keep :]
        turns = self._rooms[room] = _Turns(kept, sum(sys.getsizeof(m["content"]) for m in kept), time.monotonic())
        self.bytes += turns.size
        self._expire()
        while self.bytes > self.max_bytes and self._rooms:
            self.bytes -= self._rooms.popitem(last=False)[1].size

    async def clear(self, room: str) -> None:
        turns = self._rooms.pop(room, None)
        self.bytes -= turns.size if turns else 0

    def __len__(self) -> int:
        return len(self._rooms)

    def _expire(self) -> None:
        limit = time.monotonic() - self.ttl
        while self._rooms:
            room, turns = next(iter(self._rooms.items()))
            if turns.written >= limit:
                return
            del self._rooms[room]
            self.bytes -= turns.size


@dataclass(slots=True)
class _Turns:
    messages: list[Message]
    #: Memory of its texts (``sys.getsizeof``), what the global bound counts.
    size: int
    written: float


class RedisHistory(HistoryStore):
    """History in Redis lists (``[<prefix>:]cable_chat:<room>``), so any process continues a conversation.

    ``keep`` messages per room (LTRIM on write); forgotten after ``ttl`` seconds idle.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        max_messages: int = 20,
        max_tokens: int = 4_000,
        keep: int = 200,
        ttl: int = 7 * 86_400,
    ) -> None:
        self.redis = connect(url)
        self.prefix = f"{prefix}:cable_chat:" if prefix else "cable_chat:"
        self.max_messages = max_messages
        self.max_tokens = max_tokens
        self.keep = keep if max_messages > 0 else 0
        self.ttl = ttl

    async def transcript(self, room: str) -> list[Message]:
        return [orjson.loads(item) for item in await self.redis.lrange(self.prefix + room, 0, -1)]

    async def append(self, room: str, *messages: Message) -> None:
        if self.keep <= 0:  # nothing kept at all (LTRIM -0 would keep everything)
            return
        key = self.prefix + room
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, *(orjson.dumps(message) for message in messages))
            pipe.ltrim(key, -self.keep, -1)
            pipe.expire(key, self.ttl)
            await pipe.execute()

    async def clear(self, room: str) -> None:
        await self.redis.delete(self.prefix + room)

    async def close(self) -> None:
        await self.redis.aclose()
