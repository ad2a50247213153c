"""Redis pub/sub, wire-compatible with Rails' ``redis`` adapter, so processes (and a Rails app) share broadcasts.

As Rails does: the Redis channel is ``<channel_prefix>:<broadcasting>`` (the bare name without
a prefix); payloads are ActiveSupport JSON; one subscriber connection per process named
``ActionCable-PID-<pid>`` whose first subscription is ``_action_cable_internal``; publishing goes
over another connection. A message that is not JSON is dropped with a log line. Messages are
decoded and re-encoded on arrival, so a payload published by anyone reaches clients in exactly
the bytes Rails would send.

When Redis goes away, clients keep their sockets: the subscriber reconnects with backoff and
subscribes again to every live stream, and the outage is logged (what was published meanwhile
is lost, as with Rails). Publishing during the outage raises :class:`PubSubError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from .. import encoding, redis_client
from ..errors import PubSubError
from ..redis_client import GroupCommit
from .base import MessageHandler, PubSubBackend

__all__ = ["RedisBackend"]

logger = logging.getLogger("cable_server.pubsub.redis")

INTERNAL_CHANNEL = "_action_cable_internal"
_FAILURES = (RedisError, OSError, TimeoutError)


def redacted(url: str) -> str:
    """The URL without its password, for logs and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisBackend(PubSubBackend):
    """The Redis pub/sub at ``url``, with Rails' ``channel_prefix``; see the module docstring."""

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        channel_prefix: str | None = None,
        subscribe_timeout: float = 5.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.url = url
        self.channel_prefix = channel_prefix or None
        self.subscribe_timeout = subscribe_timeout
        self.max_backoff = max_backoff
        self._redis: aioredis.Redis | None = None
        self._publisher: GroupCommit
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._on_message: MessageHandler | None = None
        self._channels: set[str] = set()  # full Redis names of live subscriptions
        self._acks: dict[str, list[asyncio.Future[None]]] = {}
        self._connected = asyncio.Event()
        #: When the subscriber last subscribed again after losing its connection.
        self._recovered_at = -math.inf

    def redis_channel(self, broadcasting: str) -> str:
        """The Redis channel of ``broadcasting``: ``<prefix>:<broadcasting>``, bare without a prefix."""
        return f"{self.channel_prefix}:{broadcasting}" if self.channel_prefix else broadcasting

    def _broadcasting(self, channel: str) -> str | None:
        if not self.channel_prefix:
            return channel
        prefix = self.channel_prefix + ":"
        return channel[len(prefix) :] if channel.startswith(prefix) else None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, on_message: MessageHandler) -> None:
        self._on_message = on_message
        # The subscriber's client: no silent retries, a lost connection must surface here, to be
        # logged and recovered. Publishing goes through a client that retries a dead connection.
        self._redis = redis_client.connect(
            self.url, client_name=f"ActionCable-PID-{os.getpid()}", retry=Retry(NoBackoff(), 0), health_check_interval=0
        )
        self._publisher = GroupCommit(redis_client.connect(self.url, client_name=f"ActionCable-PID-{os.getpid()}"))
        try:
            await self._redis.ping()
            self._pubsub = await self._subscriber()
        except _FAILURES as exc:
            await self._redis.aclose()
            await self._publisher.redis.aclose()
            raise PubSubError(f"cannot reach Redis at {redacted(self.url)}: {exc}") from exc
        self._reader = asyncio.ensure_future(self._read())
        logger.info("pub/sub on Redis at %s (channel prefix %r)", redacted(self.url), self.channel_prefix)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        if self._redis is not None:
            await self._publisher.close()
            await self._publisher.redis.aclose()
            await self._redis.aclose()
            self._redis = None
        self._channels.clear()
        self._on_message = None

    async def _subscriber(self) -> PubSub:
        """A new subscriber connection, subscribed to the internal channel and every live stream."""
        assert self._redis is not None
        pubsub = self._redis.pubsub()
        await pubsub.subscribe(INTERNAL_CHANNEL, *self._channels)
        self._connected.set()
        return pubsub

    # --- the interface --------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        full = self.redis_channel(channel)
        self._channels.add(full)
        ack = asyncio.get_running_loop().create_future()
        self._acks.setdefault(full, []).append(ack)
        try:
            async with asyncio.timeout(self.subscribe_timeout):
                await self._connected.wait()
                assert self._pubsub is not None
                await self._pubsub.subscribe(full)
                await ack  # Redis confirmed: from now on every PUBLISH reaches us
        except _FAILURES as exc:
            self._channels.discard(full)
            raise PubSubError(f"cannot subscribe to {full!r} on Redis: {exc or type(exc).__name__}") from exc
        finally:
            waiting = self._acks.get(full)
            if waiting is not None and ack in waiting:
                waiting.remove(ack)
                if not waiting:
                    del self._acks[full]

    async def unsubscribe(self, channel: str) -> None:
        full = self.redis_channel(channel)
        self._channels.discard(full)
        if self._pubsub is not None and self._connected.is_set():
            try:
                await self._pubsub.unsubscribe(full)
            except _FAILURES as exc:  # gone with the connection anyway
                logger.debug("unsubscribe %r: %s", full, exc)

    async def broadcast(self, channel: str, payload: str) -> None:
        if self._redis is None:
            raise PubSubError("the Redis backend is not started")
        full = self.redis_channel(channel)
        try:
            await self._publisher.execute(("PUBLISH", full, payload))
        except _FAILURES as exc:
            raise PubSubError(f"cannot publish to {full!r} on Redis: {exc or type(exc).__name__}") from exc

    def missed_since(self, when: float) -> bool:
        return not self._connected.is_set() or self._recovered_at > when

    async def ping(self) -> None:
        """Both connections are up: the subscriber's (else broadcasts are lost) and a PING answered."""
        if self._redis is None:
            raise PubSubError("the Redis backend is not started")
        if not self._connected.is_set():
            raise PubSubError(f"the subscriber connection to Redis at {redacted(self.url)} is down")
        try:
            await self._redis.ping()
        except _FAILURES as exc:
            raise PubSubError(f"Redis at {redacted(self.url)} does not answer: {exc or type(exc).__name__}") from exc

    # --- reading --------------------------------------------------------------------------

    async def _read(self) -> None:
        while True:
            assert self._pubsub is not None
            try:
                message = await self._pubsub.get_message(timeout=None)
            except _FAILURES as exc:
                await self._recover(exc)
                continue
            if message is not None:
                self._handle(message)

    def _handle(self, message: dict[str, Any]) -> None:
        channel = message["channel"].decode() if isinstance(message["channel"], bytes) else message["channel"]
        if message["type"] == "subscribe":
            for ack in self._acks.pop(channel, []):
                if not ack.done():
                    ack.set_result(None)
            return
        if message["type"] != "message" or channel == INTERNAL_CHANNEL:
            return
        broadcasting = self._broadcasting(channel)
        if broadcasting is None or self._on_message is None:
            return
        data = message["data"]
        try:
            payload = encoding.dumps(encoding.loads(data))
        except (encoding.DecodeError, encoding.EncodeError) as exc:
            logger.error("dropped a message on %r that is not JSON (%s): %.200r", channel, exc, data)
            return
        self._on_message(broadcasting, payload)

    async def _recover(self, error: BaseException) -> None:
        """Reconnect with exponential backoff, then subscribe again to every live stream."""
        self._connected.clear()
        lost = time.monotonic()
        logger.error("lost the Redis subscriber connection (%s); reconnecting", error or type(error).__name__)
        if self._pubsub is not None:
            with contextlib.suppress(*_FAILURES):
                await self._pubsub.aclose()
        delay = 0.05
        while True:
            await asyncio.sleep(delay)
            try:
                self._pubsub = await self._subscriber()
            except _FAILURES as exc:
                logger.debug("Redis still unreachable: %s", exc)
                delay = min(delay * 2, self.max_backoff)
                continue
            self._recovered_at = time.monotonic()
            logger.warning(
                "Redis is back after %.1f s; subscribed again to %d stream(s); broadcasts published meanwhile are lost",
                time.monotonic() - lost,
                len(self._channels),
            )
            return
