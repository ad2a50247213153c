"""Redis clients under load, against a real redis-server: the pool waits instead of failing, and
group commit sends the commands of many callers in few pipelines, in order, each caller getting
its own replies and errors."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from cable_server.redis_client import MAX_CONNECTIONS, GroupCommit, connect
from cable_server.testing import RedisServer

_KEYS = itertools.count()


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    redis = connect(redis_server.url)
    yield redis
    await redis.aclose()


def key() -> str:
    return f"groupcommit:{next(_KEYS)}"


def count_pipelines(redis: aioredis.Redis) -> list[int]:
    """Counts the pipelines redis-py is asked for (observing the library, not our code)."""
    made = [0]
    pipeline = redis.pipeline

    def counted(*args: Any, **kwargs: Any) -> Any:
        made[0] += 1
        return pipeline(*args, **kwargs)

    redis.pipeline = counted  # type: ignore[method-assign]
    return made


async def test_many_callers_share_few_round_trips_in_call_order(client: aioredis.Redis) -> None:
    commit = GroupCommit(client)
    made = count_pipelines(client)
    target = key()
    replies = await asyncio.gather(*(commit.execute(("RPUSH", target, n), ("LLEN", target)) for n in range(500)))
    assert [int(item) for item in await client.lrange(target, 0, -1)] == list(range(500))
    assert [reply[0] for reply in replies] == list(range(1, 501))  # each caller's own replies
    assert [reply[1] for reply in replies] == list(range(1, 501))
    assert made[0] <= 3, made  # the first caller alone, then everyone queued meanwhile


async def test_one_callers_error_is_its_own(client: aioredis.Redis) -> None:
    commit = GroupCommit(client)
    text, target = key(), key()
    await client.set(text, "a string")
    good, bad, also_good = await asyncio.gather(
        commit.execute(("RPUSH", target, "x")),
        commit.execute(("RPUSH", text, "x")),  # WRONGTYPE
        commit.execute(("RPUSH", target, "y")),
        return_exceptions=True,
    )
    assert good == [1] and also_good == [2]
    assert isinstance(bad, ResponseError) and "WRONGTYPE" in str(bad)


async def test_a_cancelled_caller_does_not_disturb_the_others(client: aioredis.Redis) -> None:
    commit = GroupCommit(client)
    target = key()
    first = asyncio.ensure_future(commit.execute(("RPUSH", target, "first")))
    cancelled = asyncio.ensure_future(commit.execute(("RPUSH", target, "cancelled")))
    last = asyncio.ensure_future(commit.execute(("RPUSH", target, "last")))
    await asyncio.sleep(0)
    cancelled.cancel()
    assert await first == [1]
    assert (await last)[0] in (2, 3)  # the cancelled caller's command may have been sent already
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_every_caller_hears_of_a_redis_that_is_gone() -> None:
    with RedisServer() as redis_server:
        redis = connect(redis_server.url)
        commit = GroupCommit(redis)
        await commit.execute(("PING",))
        redis_server.kill()
        results = await asyncio.gather(*(commit.execute(("PING",)) for _ in range(20)), return_exceptions=True)
        assert all(isinstance(result, RedisConnectionError) for result in results), results
        await commit.close()
        await redis.aclose()


async def test_a_pool_under_load_waits_for_a_connection_instead_of_failing(client: aioredis.Redis) -> None:
    """Three times more blocking commands at once than the pool has connections: all complete
    (redis-py's default pool raised MaxConnectionsError at its 100th connection in use)."""
    empty = key()
    calls = 3 * MAX_CONNECTIONS
    results = await asyncio.gather(*(client.blpop([empty], timeout=0.2) for _ in range(calls)))
    assert results == [None] * calls


async def test_commands_outlive_connections_that_redis_closed(client: aioredis.Redis, redis_server: RedisServer) -> None:
    """Redis closed every pooled connection (a restart, CLIENT KILL, its idle ``timeout``): the
    next commands reconnect and succeed, grouped or not (before, the first on each failed)."""
    commit = GroupCommit(client)
    await asyncio.gather(*(client.blpop([key()], timeout=0.05) for _ in range(8)))  # eight pooled connections
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        assert await admin.client_kill_filter(_type="normal", skipme=True) >= 8
    finally:
        await admin.aclose()
    results = await asyncio.gather(
        *(commit.execute(("PING",)) for _ in range(20)), *(client.get(key()) for _ in range(20)), return_exceptions=True
    )
    assert results == [[True]] * 20 + [None] * 20, results
