"""The frames of recent generations, kept so a client that lost its socket can catch up (``resume``).

Every frame of a generation is stored before it is broadcast, so a client that subscribes again
and then asks for ``seq > after_seq`` gets everything it missed: what was broadcast before its
new subscription is in the store, what comes after arrives live (the client keeps frames by
``seq``, so the overlap is harmless). A generation's frames expire ``ttl`` seconds after its last
one; beyond ``max_frames`` the oldest are dropped, and a resume that needs them is ``expired``.
"""

from __future__ import annotations

import abc
import collections
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..redis_client import GroupCommit, connect

__all__ = ["FrameStore", "MemoryFrameStore", "RedisFrameStore", "Replay"]

Frame = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Replay:
    """What a resume finds: the frames after ``after_seq``, or ``expired`` when some are gone."""

    message_id: str
    frames: list[Frame]
    expired: bool = False


class FrameStore(abc.ABC):
    """Where generation frames are kept for ``resume``: bounded per generation, expiring."""

    def __init__(self, *, ttl: float = 300.0, max_frames: int = 20_000) -> None:
        self.ttl = ttl
        self.max_frames = max_frames

    @abc.abstractmethod
    async def append(self, room: str, frame: Frame) -> None:
        """Keep ``frame`` (it has ``message_id`` and ``seq``); it becomes the room's latest generation."""

    @abc.abstractmethod
    async def forget(self, room: str) -> None:
        """Drop the room's latest generation (the conversation was reset: nothing to resume)."""

    @abc.abstractmethod
    async def first(self, room: str) -> Frame | None:
        """The first frame kept of the room's latest generation (its ``start``, unless trimmed)."""

    @abc.abstractmethod
    async def replay(self, room: str, message_id: str | None, after_seq: int) -> Replay | None:
        """Frames with ``seq > after_seq`` of ``message_id`` (the room's latest when ``None``);
        ``None`` when the room has no such generation stored."""

    async def close(self) -> None:  # noqa: B027 (in-process stores hold nothing)
        """Release connections; called when the server stops."""


def _after(frames: list[Frame], after_seq: int, message_id: str) -> Replay:
    first = frames[0]["seq"] if frames else 0
    expired = after_seq + 1 < first
    return Replay(message_id, [] if expired else [f for f in frames if f["seq"] > after_seq], expired)


@dataclass
class _Kept:
    room: str
    frames: collections.deque[Frame]
    expires: float = field(default=0.0)
    #: Characters of content kept (plus a little per frame), what the global bound counts.
    size: int = 0


#: What one frame costs beyond its content, for the global bound (its dict and keys, roughly).
_FRAME_COST = 64


class MemoryFrameStore(FrameStore):
    """In-process frames, for a single server process; at most ``max_bytes`` in all (the
    generations written least recently are dropped first, and a resume that needs them is ``expired``)."""

    def __init__(self, *, ttl: float = 300.0, max_frames: int = 20_000, max_bytes: int = 64 << 20) -> None:
        super().__init__(ttl=ttl, max_frames=max_frames)
        self.max_bytes = max_bytes
        self.bytes = 0
        #: Least recently written first: every append moves its generation to the end, so the
        #: expired ones (one TTL for all) are always at the front and expiring is O(expired).
        self._generations: collections.OrderedDict[str, _Kept] = collections.OrderedDict()
        self._latest: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._generations)

    async def append(self, room: str, frame: Frame) -> None:
        now = time.monotonic()
        message_id = frame["message_id"]
        kept = self._generations.get(message_id)
        if kept is None:
            self._expire(now)
            kept = self._generations[message_id] = _Kept(room, collections.deque(maxlen=self.max_frames))
            self._latest[room] = message_id
        else:
            self._generations.move_to_end(message_id)
        if len(kept.frames) == kept.frames.maxlen:
            dropped = _cost(kept.frames[0])
            kept.size -= dropped
            self.bytes -= dropped
        kept.frames.append(frame)
        cost = _cost(frame)
        kept.size += cost
        self.bytes += cost
        kept.expires = now + self.ttl
        while self.bytes > self.max_bytes and len(self._generations) > 1:
            self._forget(next(iter(self._generations)))

    async def forget(self, room: str) -> None:
        message_id = self._latest.get(room)
        if message_id is not None and message_id in self._generations:
            self._forget(message_id)

    async def first(self, room: str) -> Frame | None:
        self._expire(time.monotonic())
        kept = self._generations.get(self._latest.get(room, ""))
        return kept.frames[0] if kept is not None and kept.frames else None

    async def replay(self, room: str, message_id: str | None, after_seq: int) -> Replay | None:
        self._expire(time.monotonic())
        message_id = message_id or self._latest.get(room)
        kept = self._generations.get(message_id) if message_id else None
        if message_id is None or kept is None or kept.room != room:  # never another room's frames
            return None
        return _after(list(kept.frames), after_seq, message_id)

    def _expire(self, now: float) -> None:
        generations = self._generations
        while generations:
            message_id, kept = next(iter(generations.items()))
            if kept.expires >= now:
                break
            self._forget(message_id)

    def _forget(self, message_id: str) -> None:
        kept = self._generations.pop(message_id)
        self.bytes -= kept.size
        if self._latest.get(kept.room) == message_id:
            del self._latest[kept.room]


def _cost(frame: Frame) -> int:
    content = frame.get("content")
    cost = _FRAME_COST + (sys.getsizeof(content) if isinstance(content, str) else 0)
    question = frame.get("question")  # a start frame carries the question
    return cost + sys.getsizeof(question) if isinstance(question, str) else cost


@dataclass(slots=True)
class _Written:
    size: int = 0
    expires: float = 0.0


#: The events that end a generation: its frames stop coming after one of them.
_LAST_EVENTS = frozenset({"done", "stopped", "error"})


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisFrameStore(FrameStore):
    """Frames in Redis lists, so a client may resume on any server process.

    ``[<prefix>:]cable_frames:<message_id>`` holds the frames, ``...:room:<room>`` the latest
    generation of a room; both expire ``ttl`` seconds after the last frame.

    Each process bounds what it wrote and is still kept to ``max_bytes`` of JSON (the generations
    written least recently are deleted first, as in process): only the process writing a
    generation appends to it, so it can count without asking Redis.
    """

    def __init__(
        self, url: str, *, prefix: str | None = None, ttl: float = 300.0, max_frames: int = 20_000, max_bytes: int = 64 << 20
    ) -> None:
        super().__init__(ttl=ttl, max_frames=max_frames)
        self.redis = connect(url)
        self.prefix = f"{prefix}:cable_frames:" if prefix else "cable_frames:"
        self.max_bytes = max_bytes
        self.bytes = 0
        self._writes = GroupCommit(self.redis)
        #: When each running generation's keys were last given a new TTL.
        self._refreshed: dict[str, float] = {}
        #: What this process wrote and Redis still keeps, least recently written first.
        self._written: collections.OrderedDict[str, _Written] = collections.OrderedDict()

    async def append(self, room: str, frame: Frame) -> None:
        message_id = frame["message_id"]
        key = self.prefix + message_id
        data = orjson.dumps(frame)
        commands: list[tuple[Any, ...]] = [("RPUSH", key, data)]
        commands += self._count(message_id, len(data), frame["seq"] >= self.max_frames)
        if frame["seq"] >= self.max_frames:
            commands.append(("LTRIM", key, -self.max_frames, -1))
        # The keys live ``ttl`` after the last frame. Setting that on every frame was four more
        # commands per token; it is done on the first and the last frame, and in between often
        # enough (a quarter of the TTL) that a long answer never loses its beginning.
        now = time.monotonic()
        last = frame.get("event") in _LAST_EVENTS
        if last or now - self._refreshed.get(message_id, -math.inf) > self.ttl / 4:
            ttl = max(1, round(self.ttl))
            commands += [
                ("EXPIRE", key, ttl),
                ("SET", f"{self.prefix}room:{room}", message_id, "EX", ttl),
                ("SET", f"{self.prefix}owner:{message_id}", room, "EX", ttl),
            ]
            if last:
                self._refreshed.pop(message_id, None)
            else:
                self._refreshed[message_id] = now
        await self._writes.execute(*commands)

    def _count(self, message_id: str, size: int, trimmed: bool) -> list[tuple[Any, ...]]:
        """Count ``size`` more bytes for ``message_id``; the commands that delete the generations
        this process must forget to stay within ``max_bytes`` (and those Redis expired go)."""
        now = time.monotonic()
        written = self._written
        while written and next(iter(written.values())).expires < now:
            self.bytes -= written.popitem(last=False)[1].size
        entry = written.pop(message_id, None) or _Written()
        if trimmed:  # LTRIM drops about as much as is added: the count stays an upper bound
            size = 0
        entry.size += size
        entry.expires = now + self.ttl
        written[message_id] = entry
        self.bytes += size
        commands: list[tuple[Any, ...]] = []
        while self.max_bytes and self.bytes > self.max_bytes and len(written) > 1:
            oldest, dropped = written.popitem(last=False)
            self.bytes -= dropped.size
            commands.append(("DEL", self.prefix + oldest, f"{self.prefix}owner:{oldest}"))
        return commands

    async def forget(self, room: str) -> None:
        latest = await self.redis.get(f"{self.prefix}room:{room}")
        if latest is not None:
            message_id = _text(latest)
            await self.redis.delete(self.prefix + message_id, f"{self.prefix}owner:{message_id}", f"{self.prefix}room:{room}")

    async def first(self, room: str) -> Frame | None:
        latest = await self.redis.get(f"{self.prefix}room:{room}")
        raw = await self.redis.lindex(self.prefix + _text(latest), 0) if latest is not None else None
        return orjson.loads(raw) if raw is not None else None

    async def replay(self, room: str, message_id: str | None, after_seq: int) -> Replay | None:
        if message_id is None:
            latest = await self.redis.get(f"{self.prefix}room:{room}")
            if latest is None:
                return None
            message_id = _text(latest)
        owner = await self.redis.get(f"{self.prefix}owner:{message_id}")
        if owner is None or _text(owner) != room:  # never another room's frames
            return None
        frames = [orjson.loads(raw) for raw in await self.redis.lrange(self.prefix + message_id, 0, -1)]
        return _after(frames, after_seq, message_id)

    async def close(self) -> None:
        await self._writes.close()
        await self.redis.aclose()
