"""A deadline that moves with every chunk and costs one timer per generation, not one per chunk.

The stall deadline of a streamed answer moves forward each time a chunk arrives, thousands of
times a second in a busy process. ``asyncio.timeout(...)`` per chunk (or ``reschedule``) cancels
one timer handle and pushes another onto the loop's heap every time; at 300 concurrent answers
that was a tenth of the server's CPU. Here moving the deadline only stores a number: the one
timer, when it fires, arms itself again at the stored time if the deadline moved meanwhile, so a
healthy stream with a 30 s stall timeout wakes it about once every 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["Deadline", "deadline"]


class Deadline:
    """The moving deadline of one :func:`deadline` block, in the loop's clock (``loop.time()``)."""

    def __init__(self, scope: asyncio.Timeout, when: float) -> None:
        self._scope = scope
        self._loop = asyncio.get_running_loop()
        #: When the block times out unless moved again.
        self.when = when
        self._timer: asyncio.TimerHandle | None = None
        self._arm(when)

    def _arm(self, when: float) -> None:
        self._timer = self._loop.call_at(when, self._check)
        self._armed = when

    def move_to(self, when: float) -> None:
        """Time out at ``when`` instead (later or earlier); O(1), no timer is touched."""
        if self._timer is not None and when < self._armed:  # earlier than the timer: it must wake sooner
            self._timer.cancel()
            self._arm(when)
        self.when = when

    def in_(self, seconds: float) -> None:
        """Time out ``seconds`` from now."""
        self.move_to(self._loop.time() + seconds)

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self.when:
            self._timer = None
            self._scope.reschedule(now)  # expires the enclosing asyncio.timeout: TimeoutError
        else:
            self._arm(self.when)

    def cancel(self) -> None:
        """The block is over: the timer goes."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


@contextlib.asynccontextmanager
async def deadline(seconds: float) -> AsyncIterator[Deadline]:
    """``async with deadline(s) as d:`` raises ``TimeoutError`` if the block outlives ``d.when``
    (``s`` seconds from now until moved with :meth:`Deadline.in_` / :meth:`Deadline.move_to`)."""
    async with asyncio.timeout(None) as scope:
        moving = Deadline(scope, asyncio.get_running_loop().time() + max(seconds, 0.0))
        try:
            yield moving
        finally:
            moving.cancel()
