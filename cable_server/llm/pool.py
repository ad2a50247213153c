"""A bounded pool of generation slots with a fair (first come, first served) waiting line.

A burst of users must not open unbounded upstream connections: at most ``limit``
generations stream at once. The others wait in arrival order and are told their position
whenever it changes, so a frontend can show "you are 3rd in line".
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from .errors import ErrorCategory, GenerationError

__all__ = ["GenerationPool"]


@dataclass(eq=False, slots=True)
class _Waiter:
    position: int
    granted: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class GenerationPool:
    """``limit`` slots, handed out first come first served; at most ``max_waiting`` wait."""

    def __init__(self, limit: int, max_waiting: int) -> None:
        if limit < 1:
            raise ValueError("a generation pool needs at least one slot")
        self.limit = limit
        self.max_waiting = max_waiting
        self.active = 0
        self._waiting: collections.deque[_Waiter] = collections.deque()

    @property
    def waiting(self) -> int:
        """How many generations wait for a slot."""
        return len(self._waiting)

    @contextlib.asynccontextmanager
    async def slot(self, on_position: Callable[[int], Awaitable[None]]) -> AsyncIterator[None]:
        """Hold a slot for the body; waits in line when all are taken.

        While waiting, ``await on_position(n)`` runs in the caller's task each time its place
        in line changes (1 is next), so what it sends stays in order with what follows.
        Raises ``GenerationError(overloaded)`` when the line is full.
        """
        if self.active < self.limit and not self._waiting:
            self.active += 1
        else:
            await self._wait(on_position)
        try:
            yield
        finally:
            self._release()

    async def _wait(self, on_position: Callable[[int], Awaitable[None]]) -> None:
        if len(self._waiting) >= self.max_waiting:
            raise GenerationError(ErrorCategory.OVERLOADED, "Too many answers are waiting; try again in a moment.")
        waiter = _Waiter(len(self._waiting) + 1)
        self._waiting.append(waiter)
        reported = 0
        try:
            while not waiter.granted:
                if waiter.position != reported:
                    reported = waiter.position
                    await on_position(reported)
                else:
                    waiter.changed.clear()
                    await waiter.changed.wait()
        except asyncio.CancelledError:
            if waiter.granted:
                self._release()  # the slot was handed over just as we gave up: pass it on
            else:
                self._waiting.remove(waiter)
                self._renumber()
            raise

    def _release(self) -> None:
        """Hand the slot straight to the first in line, so nobody can overtake it."""
        if not self._waiting:
            self.active -= 1
            return
        waiter = self._waiting.popleft()
        waiter.granted = True
        waiter.changed.set()
        self._renumber()

    def _renumber(self) -> None:
        for position, waiter in enumerate(self._waiting, 1):
            if waiter.position != position:
                waiter.position = position
                waiter.changed.set()
