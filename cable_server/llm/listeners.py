"""Who listens to each room, and the end of answers nobody hears any more.

A generation belongs to its room, not to the subscription that asked: when that tab goes, the
others keep receiving it. When the last subscriber of a room leaves, its answer is cancelled
(``no_subscribers``) after ``orphan_grace`` seconds, so that a client whose socket dropped can
come back and ``resume`` meanwhile. With several processes on Redis, subscribers elsewhere count
too: the room's Redis channel is asked how many processes still subscribe (``PUBSUB NUMSUB``),
and the answer goes on (looked at again after the grace period) while any does.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING

from .. import logs
from ..pubsub import RedisBackend

if TYPE_CHECKING:
    from .service import ChatService, Generation

__all__ = ["RoomListeners"]

logger = logging.getLogger("cable_server.llm")


class RoomListeners:
    """Subscribers per room in this process, and the pending orphan checks."""

    def __init__(self, service: ChatService) -> None:
        self._service = service
        self._count: collections.Counter[str] = collections.Counter()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._checks: set[asyncio.Future[None]] = set()

    def joined(self, room: str) -> None:
        """A subscriber joined ``room``: a pending orphan cancellation of its generation is called off."""
        self._count[room] += 1
        timer = self._timers.pop(room, None)
        if timer is not None:
            timer.cancel()

    def left(self, room: str) -> None:
        """A subscriber left; with none left, the room's generation ends (after the grace period)."""
        self._count[room] -= 1
        if self._count[room] > 0:
            return
        del self._count[room]
        if room not in self._service.active:
            return
        grace = self._service.settings.orphan_grace
        if grace <= 0:
            self._abandon(room)
        elif room not in self._timers:
            self._timers[room] = asyncio.get_running_loop().call_later(grace, self._abandon, room)

    def close(self) -> None:
        """Cancel the timers and checks (the service is stopping)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for check in self._checks:
            check.cancel()

    def _abandon(self, room: str) -> None:
        self._timers.pop(room, None)
        generation = self._service.active.get(room)
        if self._count[room] <= 0 and generation is not None and generation.task is not None:
            self._checks.add(asyncio.ensure_future(self._abandon_unless_heard_elsewhere(room, generation)))

    async def _abandon_unless_heard_elsewhere(self, room: str, generation: Generation) -> None:
        """Cancel an answer nobody listens to here, unless another process still has subscribers
        of the room (then look again after the grace period)."""
        server = self._service.server
        try:
            backend = server.router.backend
            elsewhere = 0
            if isinstance(backend, RedisBackend):
                elsewhere = await self._service.claims.subscribers(backend.redis_channel(room)) - (room in server.router)
        except Exception as exc:
            logger.warning("cannot tell whether %s has subscribers elsewhere (%s): ending its answer", logs.clip(room), exc)
            elsewhere = 0
        finally:
            self._checks.discard(asyncio.current_task())
        if self._count[room] > 0 or self._service.active.get(room) is not generation:
            return
        if elsewhere > 0:
            grace = self._service.settings.orphan_grace
            self._timers[room] = asyncio.get_running_loop().call_later(grace, self._abandon, room)
        else:
            generation.cancel("no_subscribers")
