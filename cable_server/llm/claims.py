"""Which process writes a room's answer, when several processes serve the same rooms.

One answer per room is the rule (a second ``send_message`` is ``busy``), and ``stop``, ``reset``
and the orphan check must reach the answer wherever it runs. In one process the service's own
table of generations is the whole truth (:class:`LocalClaims` adds nothing). With Redis
(``--workers``, or several hosts), :class:`RedisClaims` keeps a claim per room: ``SET NX`` with a
lease renewed while the answer runs (a crashed process's claim lapses), released by
compare-and-delete; requests for an answer running elsewhere go out on :data:`CONTROL_STREAM`,
which every process listens to (one subscription per process, not one per answer: 1,000 answers
starting at once were 1,000 SUBSCRIBE round trips queued behind one another) and the process
running the room's answer acts on.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from ..redis_client import connect

__all__ = ["CONTROL_STREAM", "Claims", "LocalClaims", "RedisClaims"]

logger = logging.getLogger("cable_server.llm")

# Deletes the claim only if it is still ours: a lapsed claim taken by another answer stays.
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"
_RENEW = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"


#: The broadcasting that carries stop requests (``{"room", "stop": message_id, "reason"}``) to
#: every process; no channel streams a name starting with an underscore to clients.
CONTROL_STREAM = "_cable_server:gpt_chat:control"


class Claims(abc.ABC):
    """Who is writing each room's answer, across processes."""

    #: Whether other processes share these claims (then stop requests travel between them).
    shared: bool = True

    @abc.abstractmethod
    async def claim(self, room: str, message_id: str) -> str | None:
        """Claim ``room`` for ``message_id``: ``None`` when claimed, else the message id of the
        answer another process is writing there."""

    @abc.abstractmethod
    def held(self, room: str, message_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Keep the claim while the answer runs (renewing it), release it at the end."""

    @abc.abstractmethod
    async def holder(self, room: str) -> str | None:
        """The message id of the answer being written in ``room`` by any process, if any."""

    async def subscribers(self, channel: str) -> int:
        """How many processes subscribe to the Redis ``channel`` (0 where there is no Redis)."""
        return 0

    async def close(self) -> None:  # noqa: B027 (in-process claims hold nothing)
        """Release connections; called when the server stops."""


class LocalClaims(Claims):
    """One process: its generations table is the truth, there is nobody else to tell."""

    shared = False

    async def claim(self, room: str, message_id: str) -> str | None:
        return None

    @contextlib.asynccontextmanager
    async def held(self, room: str, message_id: str) -> AsyncIterator[None]:
        yield

    async def holder(self, room: str) -> str | None:
        return None


class RedisClaims(Claims):
    """Claims in Redis: ``[<prefix>:]cable_claim:<room>`` holds the message id, for ``lease`` seconds
    at a time, renewed every third of it while the answer runs."""

    def __init__(self, url: str, *, prefix: str | None = None, lease: float = 30.0) -> None:
        self.redis = connect(url)
        self.prefix = f"{prefix}:cable_claim:" if prefix else "cable_claim:"
        self.lease_ms = max(1, round(lease * 1000))

    async def claim(self, room: str, message_id: str) -> str | None:
        key = self.prefix + room
        if await self.redis.set(key, message_id, nx=True, px=self.lease_ms):
            return None
        holder = await self.redis.get(key)
        return _text(holder) if holder is not None else await self.claim(room, message_id)

    @contextlib.asynccontextmanager
    async def held(self, room: str, message_id: str) -> AsyncIterator[None]:
        key = self.prefix + room
        renewer = asyncio.ensure_future(self._renew(key, message_id))
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            try:
                await self.redis.eval(_RELEASE, 1, key, message_id)
            except Exception as exc:  # the lease lapses by itself
                logger.warning("cannot release the claim on %s (%s); it lapses in %d ms", room, exc, self.lease_ms)

    async def _renew(self, key: str, message_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            try:
                await self.redis.eval(_RENEW, 1, key, message_id, self.lease_ms)
            except Exception as exc:
                logger.warning("cannot renew the claim %s (%s)", key, exc)

    async def holder(self, room: str) -> str | None:
        holder = await self.redis.get(self.prefix + room)
        return _text(holder) if holder is not None else None

    async def subscribers(self, channel: str) -> int:
        counts = await self.redis.pubsub_numsub(channel)
        return int(counts[0][1]) if counts else 0

    async def close(self) -> None:
        await self.redis.aclose()


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()
