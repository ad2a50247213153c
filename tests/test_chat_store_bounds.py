"""The chat's stores are bounded wherever they keep their data, in Redis as in memory.

Redis is often the Rails app's Redis too, so what a public chat keeps there has the bounds it has
in process: per room (``transcript_messages`` turns, ``history_room_bytes`` bytes), per day
(``history_ttl``), and in all rooms together (``history_max_bytes``, the rooms least recently
written forgotten first, one bound for every process sharing the prefix); the frames kept for
``resume`` at most ``resume_max_bytes`` of what each process wrote. Everything here runs on a real
``redis-server``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import orjson
import pytest
import redis.asyncio as aioredis

from cable_server.llm import MemoryHistory, RedisHistory
from cable_server.llm.replay import RedisFrameStore
from cable_server.testing import FakeOpenAI, Reply
from cable_server.testing.redis_server import RedisServer

from .chat_helpers import UNBUDGETED, read_answer, room, start_chat
from .conftest import ServerFactory

_PREFIXES = itertools.count()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


def _prefix() -> str:
    return f"bounds{next(_PREFIXES)}"


async def _kept_bytes(redis: aioredis.Redis, prefix: str) -> dict[str, int]:
    """Each room's list as Redis holds it: JSON bytes per room."""
    sizes = {}
    async for key in redis.scan_iter(f"{prefix}:cable_chat:*"):
        sizes[key.decode().split(":", 2)[2]] = sum(len(item) for item in await redis.lrange(key, 0, -1))
    return sizes


def _turn(n: int, size: int) -> tuple[dict[str, str], dict[str, str]]:
    return {"role": "user", "content": f"q{n} " + "x" * size}, {"role": "assistant", "content": f"a{n}"}


async def test_a_room_in_redis_keeps_its_latest_turns_within_count_bytes_and_a_day(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    prefix = _prefix()
    history = RedisHistory(redis_server.url, prefix=prefix, keep=10, room_bytes=5_000, ttl=3_600)
    for n in range(8):
        await history.append("r", *_turn(n, 1_000))
    kept = await history.transcript("r")
    assert 0 < sum(len(orjson.dumps(m)) for m in kept) <= 5_000
    assert kept[-1]["content"] == "a7" and "q0" not in {m["content"][:2] for m in kept}
    assert 0 < await redis.ttl(f"{prefix}:cable_chat:r") <= 3_600
    for n in range(8, 20):
        await history.append("r", *_turn(n, 10))
    assert len(await history.transcript("r")) == 10
    await history.close()


async def test_a_turn_alone_over_the_room_bound_is_kept_whole(redis_server: RedisServer) -> None:
    """The newest message always stays: a transcript never loses the answer just written."""
    history = RedisHistory(redis_server.url, prefix=_prefix(), room_bytes=100)
    await history.append("r", *_turn(0, 500))
    assert [m["content"] for m in await history.transcript("r")] == ["a0"]
    await history.close()


async def test_rooms_in_redis_share_one_bound_the_least_recently_written_forgotten_first(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """Two processes (two stores) writing 200 rooms of ~1 kB with a 20 kB bound: Redis holds at
    most 20 kB of history, the newest rooms, and the index agrees with what is there."""
    prefix = _prefix()
    one, two = (RedisHistory(redis_server.url, prefix=prefix, max_bytes=20_000) for _ in range(2))
    for n in range(200):
        await (one if n % 2 else two).append(f"room{n}", *_turn(n, 1_000))
    kept = await _kept_bytes(redis, prefix)
    assert 10_000 < sum(kept.values()) <= 20_000
    assert "room199" in kept and "room0" not in kept
    assert int(await redis.get(f"{prefix}:cable_chat_bytes") or 0) == sum(kept.values())
    assert await redis.zcard(f"{prefix}:cable_chat_rooms") == len(kept)
    await one.clear("room199")
    assert int(await redis.get(f"{prefix}:cable_chat_bytes") or 0) == sum(kept.values()) - kept["room199"]
    assert await one.transcript("room199") == []
    await one.close()
    await two.close()


async def test_a_room_written_again_after_it_expired_is_counted_once(redis_server: RedisServer, redis: aioredis.Redis) -> None:
    prefix = _prefix()
    history = RedisHistory(redis_server.url, prefix=prefix, ttl=1)
    await history.append("r", *_turn(0, 100))
    await redis.delete(f"{prefix}:cable_chat:r")  # as its TTL would
    await history.append("r", *_turn(1, 100))
    assert int(await redis.get(f"{prefix}:cable_chat_bytes") or 0) == sum((await _kept_bytes(redis, prefix)).values())
    assert len(await history.transcript("r")) == 2
    await history.close()


async def test_a_room_in_memory_keeps_its_latest_turns_within_its_bytes() -> None:
    history = MemoryHistory(room_bytes=5_000)
    for n in range(8):
        await history.append("r", *_turn(n, 1_000))
    kept = await history.transcript("r")
    assert 2 <= len(kept) < 16 and kept[-1]["content"] == "a7"
    assert history.bytes <= 5_000


async def test_resume_frames_in_redis_stay_within_what_each_process_may_keep(
    redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """100 answers of 50 frames with a 50 kB bound: the oldest answers are deleted from Redis (a
    resume of one finds nothing, as in process), the newest are whole."""
    prefix = _prefix()
    frames = RedisFrameStore(redis_server.url, prefix=prefix, max_bytes=50_000)
    for answer in range(100):
        for seq in range(50):
            await frames.append(f"room{answer}", {"content": "x" * 20, "message_id": f"m{answer}", "seq": seq})
    kept = 0
    async for key in redis.scan_iter(f"{prefix}:cable_frames:m*"):
        kept += sum(len(item) for item in await redis.lrange(key, 0, -1))
    assert 25_000 < kept <= 50_000 and frames.bytes == kept
    assert await frames.replay("room0", None, -1) is None
    latest = await frames.replay("room99", None, -1)
    assert latest is not None and len(latest.frames) == 50
    await frames.close()


async def test_a_chat_on_redis_keeps_its_history_within_the_settings(
    serve: ServerFactory, fake_openai: FakeOpenAI, redis_server: RedisServer, redis: aioredis.Redis
) -> None:
    """The service hands the settings to the Redis stores: 40 rooms asked a 3 kB question under a
    30 kB bound and a one-hour TTL keep at most that."""
    prefix = _prefix()
    options = {"history_url": redis_server.url, "history_prefix": prefix, "history_ttl": 3_600}
    chat = await start_chat(serve, fake_openai, history_max_bytes=30_000, **options, **UNBUDGETED)
    fake_openai.default = Reply(chunks=["ok"])
    client = await chat.user(None, subscribe=None)
    for name in (f"room{n}" for n in range(40)):
        await client.subscribe(room(name))
        await client.perform(room(name), "send_message", user_content="q" * 3_000, user_id=name)
        await read_answer(client, room(name), timeout=10)
    kept = await _kept_bytes(redis, prefix)
    assert 0 < sum(kept.values()) <= 30_000 and "public_room39" in kept and "public_room0" not in kept
    assert 0 < await redis.ttl(f"{prefix}:cable_chat:public_room39") <= 3_600
