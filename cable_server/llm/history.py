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
    """In-process history, ``keep`` messages and ``room_bytes`` of text per room (the oldest
    messages go first), and in all at most ``max_bytes`` of text (the rooms least recently written
    are forgotten first) kept ``ttl`` seconds after a room's last turn: however many rooms clients
    open, it holds at most that much. ``max_messages=0`` keeps nothing at all (no memory, no
    transcript: the Rails original)."""

    def __init__(
        self,
        *,
        max_messages: int = 20,
        max_tokens: int = 4_000,
        keep: int = 200,
        room_bytes: int = 1 << 20,
        max_bytes: int = 32 << 20,
        ttl: float = 86_400,
    ) -> None:
        self.max_messages = max_messages
        self.max_tokens = max_tokens
        self.keep = keep if max_messages > 0 else 0
        self.room_bytes = room_bytes
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
        sizes = [sys.getsizeof(message["content"]) for message in kept]
        size = sum(sizes)
        dropped = 0
        while self.room_bytes and size > self.room_bytes and dropped < len(kept) - 1:
            size -= sizes[dropped]
            dropped += 1
        turns = self._rooms[room] = _Turns(kept[dropped:], size, time.monotonic())
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

    Redis is bounded like memory, since it is often the Rails app's Redis too: ``keep`` messages
    and ``room_bytes`` bytes of JSON per room (the oldest messages go first), a room forgotten
    ``ttl`` seconds after its last turn, and ``max_bytes`` in all rooms of the prefix together (the
    rooms least recently written go first). The last bound is kept by an index of the rooms
    (``[<prefix>:]cable_chat_rooms``, a sorted set by time of the last write, with their sizes in
    ``..._sizes`` and the sum in ``..._bytes``), updated by one script per write, so every
    process sharing the prefix keeps one bound. The scripts name the keys of the rooms they
    forget: a single Redis (or a cluster with one slot for the prefix, by a ``{hash tag}``) only.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str | None = None,
        max_messages: int = 20,
        max_tokens: int = 4_000,
        keep: int = 200,
        room_bytes: int = 1 << 20,
        max_bytes: int = 32 << 20,
        ttl: float = 86_400,
    ) -> None:
        self.redis = connect(url)
        head = f"{prefix}:" if prefix else ""
        self.prefix = f"{head}cable_chat:"
        self._index = [f"{head}cable_chat_rooms", f"{head}cable_chat_sizes", f"{head}cable_chat_bytes"]
        self.max_messages = max_messages
        self.max_tokens = max_tokens
        self.keep = keep if max_messages > 0 else 0
        self.room_bytes = room_bytes
        self.max_bytes = max_bytes
        self.ttl = max(1, round(ttl))
        self._append = self.redis.register_script(_APPEND)
        self._clear = self.redis.register_script(_CLEAR)

    async def transcript(self, room: str) -> list[Message]:
        return [orjson.loads(item) for item in await self.redis.lrange(self.prefix + room, 0, -1)]

    async def append(self, room: str, *messages: Message) -> None:
        if self.keep <= 0:  # nothing kept at all (LTRIM -0 would keep everything)
            return
        bounds = (self.keep, self.room_bytes, self.max_bytes, self.ttl, self.prefix, room)
        await self._append([self.prefix + room, *self._index], [*bounds, *(orjson.dumps(m) for m in messages)])

    async def clear(self, room: str) -> None:
        await self._clear([self.prefix + room, *self._index], [room])

    async def close(self) -> None:
        await self.redis.aclose()


#: Forget one room: its list, and its place and size in the index (KEYS[2..4]).
_FORGET = """
local function forget(key, room)
    local size = tonumber(redis.call('HGET', KEYS[3], room) or '0')
    redis.call('DEL', key)
    redis.call('ZREM', KEYS[2], room)
    redis.call('HDEL', KEYS[3], room)
    redis.call('DECRBY', KEYS[4], size)
end
"""

#: KEYS: the room's list, the index (rooms by last write, their sizes, the sum). ARGV: keep,
#: room_bytes, max_bytes, ttl, the prefix of room keys, the room, then the messages to append.
_APPEND = (
    _FORGET
    + """
local keep, room_bytes, max_bytes, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local prefix, room = ARGV[5], ARGV[6]
for i = 7, #ARGV do redis.call('RPUSH', KEYS[1], ARGV[i]) end
redis.call('LTRIM', KEYS[1], -keep, -1)
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local size = 0
for i = 1, #items do size = size + #items[i] end
local dropped = 0
while room_bytes > 0 and size > room_bytes and dropped < #items - 1 do
    dropped = dropped + 1
    size = size - #items[dropped]
end
if dropped > 0 then redis.call('LTRIM', KEYS[1], dropped, -1) end
redis.call('EXPIRE', KEYS[1], ttl)
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1e6
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now - ttl, 'LIMIT', 0, 100)) do
    if old ~= room then forget(prefix .. old, old) end  -- expired already: only its entry is left
end
local before = tonumber(redis.call('HGET', KEYS[3], room) or '0')
redis.call('HSET', KEYS[3], room, size)
redis.call('INCRBY', KEYS[4], size - before)
redis.call('ZADD', KEYS[2], now, room)
while max_bytes > 0 and tonumber(redis.call('GET', KEYS[4])) > max_bytes do
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0)[1]
    if oldest == nil or oldest == room then break end
    forget(prefix .. oldest, oldest)
end
for i = 2, 4 do redis.call('EXPIRE', KEYS[i], ttl) end
"""
)

#: KEYS as for ``_APPEND``; ARGV: the room.
_CLEAR = _FORGET + "forget(KEYS[1], ARGV[1])\n"
