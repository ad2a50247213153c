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
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis

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
            kept.size -= _cost(kept.frames[0])
            self.bytes -= _cost(kept.frames[0])
        kept.frames.append(frame)
        kept.size += _cost(frame)
        self.bytes += _cost(frame)
        kept.expires = now + self.ttl
        while self.bytes > self.max_bytes and len(self._generations) > 1:
            self._forget(next(iter(self._generations)))

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
    return _FRAME_COST + (sys.getsizeof(content) if isinstance(content, str) else 0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisFrameStore(FrameStore):
    """Frames in Redis lists, so a client may resume on any server process.

    ``[<prefix>:]cable_frames:<message_id>`` holds the frames, ``...:room:<room>`` the latest
    generation of a room; both expire ``ttl`` seconds after the last frame.
    """

    def __init__(self, url: str, *, prefix: str | None = None, ttl: float = 300.0, max_frames: int = 20_000) -> None:
        super().__init__(ttl=ttl, max_frames=max_frames)
        self.redis = aioredis.Redis.from_url(url, socket_connect_timeout=5)
        self.prefix = f"{prefix}:cable_frames:" if prefix else "cable_frames:"

    async def append(self, room: str, frame: Frame) -> None:
        key = self.prefix + frame["message_id"]
        ttl = max(1, round(self.ttl))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, orjson.dumps(frame))
            pipe.ltrim(key, -self.max_frames, -1)
            pipe.expire(key, ttl)
            pipe.set(f"{self.prefix}room:{room}", frame["message_id"], ex=ttl)
            pipe.set(f"{self.prefix}owner:{frame['message_id']}", room, ex=ttl)
            await pipe.execute()

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
        await self.redis.aclose()
