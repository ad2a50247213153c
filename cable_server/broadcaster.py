"""Broadcasting from outside the server: a worker, a cron job, another service.

``Broadcaster`` publishes straight to the Redis pub/sub that the server processes listen to, in
the exact format Rails' redis adapter uses, so a message reaches every process (and a Rails app
sharing the Redis)::

    async with Broadcaster("redis://localhost:6379/0", channel_prefix="myapp") as cable:
        await cable.broadcast("chat_lobby", {"text": "hello"})
        await cable.disconnect(current_user="alice")

``SyncBroadcaster`` is the same for synchronous code (Celery, RQ, Django views).
"""

from __future__ import annotations

from typing import Any

import redis

from . import encoding, redis_client
from .errors import PubSubError
from .naming import connection_identifier

__all__ = ["Broadcaster", "SyncBroadcaster"]

_FAILURES = (redis.RedisError, OSError)


class _Format:
    def __init__(self, channel_prefix: str | None) -> None:
        self.channel_prefix = channel_prefix or None

    def channel(self, broadcasting: str) -> str:
        return f"{self.channel_prefix}:{broadcasting}" if self.channel_prefix else broadcasting

    @staticmethod
    def internal(identifiers: dict[str, Any]) -> str:
        if not identifiers:
            raise ValueError("disconnect() needs the connection's identifiers, e.g. current_user=...")
        return f"action_cable/{connection_identifier(identifiers.values())}"


class Broadcaster(_Format):
    """Publish broadcasts and remote disconnects through Redis, from asyncio code."""

    def __init__(self, url: str, *, channel_prefix: str | None = None) -> None:
        super().__init__(channel_prefix)
        self._redis = redis_client.connect(url)

    async def broadcast(self, broadcasting: str, message: Any) -> int:
        """Send ``message`` to every subscriber of ``broadcasting``; returns how many server
        processes received it. Raises :class:`PubSubError` when Redis cannot be reached."""
        try:
            return int(await self._redis.publish(self.channel(broadcasting), encoding.dumps(message)))
        except _FAILURES as exc:
            raise PubSubError(f"cannot publish to {broadcasting!r}: {exc}") from exc

    async def disconnect(self, *, reconnect: bool = True, **identifiers: Any) -> int:
        """Close the connections with these identifiers, in every process (Rails' remote_connections)."""
        return await self.broadcast(self.internal(identifiers), {"type": "disconnect", "reconnect": reconnect})

    async def aclose(self) -> None:
        """Close the Redis connection pool."""
        await self._redis.aclose()

    async def __aenter__(self) -> Broadcaster:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class SyncBroadcaster(_Format):
    """:class:`Broadcaster` for synchronous code."""

    def __init__(self, url: str, *, channel_prefix: str | None = None) -> None:
        super().__init__(channel_prefix)
        self._redis = redis.Redis.from_url(url, socket_connect_timeout=5)

    def broadcast(self, broadcasting: str, message: Any) -> int:
        """Send ``message`` to every subscriber of ``broadcasting``; returns how many server processes got it.

        Raises :class:`PubSubError` when Redis cannot be reached.
        """
        try:
            return int(self._redis.publish(self.channel(broadcasting), encoding.dumps(message)))
        except _FAILURES as exc:
            raise PubSubError(f"cannot publish to {broadcasting!r}: {exc}") from exc

    def disconnect(self, *, reconnect: bool = True, **identifiers: Any) -> int:
        """Close the connections with these identifiers, in every process (Rails' remote_connections)."""
        return self.broadcast(self.internal(identifiers), {"type": "disconnect", "reconnect": reconnect})

    def close(self) -> None:
        """Close the Redis connection pool."""
        self._redis.close()

    def __enter__(self) -> SyncBroadcaster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
