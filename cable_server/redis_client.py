"""Redis clients that hold up under load: a pool that waits for a connection, and group commit.

Two things broke the chat on Redis at a few hundred concurrent answers. Every frame of every
answer was its own pipeline (store it, then publish it), each taking a pooled connection for a
round trip; redis-py's default pool *fails* (``MaxConnectionsError``) at 100 connections in
use, and the answer died. Here:

- :func:`connect` builds a client whose pool *waits* (up to ``POOL_TIMEOUT`` seconds) for a free
  connection, so a burst is slower, never an error; whose connections are checked with a PING
  before reuse after ``HEALTH_CHECK_INTERVAL`` idle seconds (Redis' ``timeout`` closes idle
  ones), and whose commands are sent again, twice at most, on a connection that turns out dead
  (a restarted Redis, ``CLIENT KILL``): otherwise the first command on each stale pooled
  connection failed, and with group commit every caller of its pipeline with it;
- :class:`GroupCommit` sends every command queued while its previous pipeline was in flight
  together in the next one: one round trip and one socket write for all the frames a loop turn
  produced, whatever the number of answers, on one connection, in the order they were queued.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["HEALTH_CHECK_INTERVAL", "MAX_CONNECTIONS", "POOL_TIMEOUT", "GroupCommit", "connect"]

#: Connections a client opens at most; more callers wait for one to be free.
MAX_CONNECTIONS = 64
#: Seconds a caller waits for a free connection before its command fails.
POOL_TIMEOUT = 10.0
#: Seconds a pooled connection may sit idle before it is checked with a PING on reuse.
HEALTH_CHECK_INTERVAL = 10.0

Command = tuple[Any, ...]


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client of ``url`` on a pool that waits for a free connection (bounded) instead of failing,
    retrying a command whose connection was dead (see the module docstring)."""
    options.setdefault("socket_connect_timeout", 5)
    options.setdefault("health_check_interval", HEALTH_CHECK_INTERVAL)
    options.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.02, cap=0.5), 2, (RedisConnectionError,)))
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=MAX_CONNECTIONS, timeout=POOL_TIMEOUT, **options)
    return aioredis.Redis.from_pool(pool)


class GroupCommit:
    """Queue commands; they go to Redis in one pipeline per round trip, in queue order.

    :meth:`execute` returns once its commands ran. While one pipeline is in flight, the
    commands queued meanwhile wait and then go together (at most ``max_batch`` callers per
    pipeline), so the number of round trips follows Redis' speed, not the number of callers.
    The pipeline is not a transaction: each caller's commands run in order, back to back with
    nothing of the same caller in between, which is all the callers here need.
    """

    def __init__(self, redis: aioredis.Redis, *, max_batch: int = 1024) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self._queue: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def execute(self, *commands: Command) -> list[Any]:
        """Run ``commands`` (``("RPUSH", key, value)``...) in the next pipeline; their replies.

        Raises the first error among them, or the pipeline's (a connection that failed).
        """
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((commands, future))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
                await self._send(batch)
        finally:
            self._flusher = None

    async def _send(self, batch: list[tuple[Sequence[Command], asyncio.Future[list[Any]]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for commands, _ in batch:
                    for command in commands:
                        pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except asyncio.CancelledError:  # closing
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for commands, future in batch:
            mine = replies[start : start + len(commands)]
            start += len(commands)
            if future.done():  # its caller was cancelled; the commands ran anyway
                continue
            error = next((reply for reply in mine if isinstance(reply, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(mine)

    async def close(self) -> None:
        """Stop; callers still waiting get ``CancelledError``."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        for _, future in self._queue:
            future.cancel()
        self._queue = []
