"""A bounded pool of generation slots, shared fairly among the clients' addresses.

A burst of users must not open unbounded upstream connections: at most ``limit`` generations
stream at once, and at most ``max_waiting`` wait for a slot (more fail as ``overloaded``). On a
public endpoint one address could otherwise take every slot and fill the line (550 sockets from one
address did both in 5.9 s, and another user's first question was refused at once), so each *key*
(the client's address) may hold at most ``per_key`` slots and ``per_key_waiting`` places in line,
and a freed slot goes to the key holding the fewest, the longest waiting of them first: one
address gets its share, everybody else the rest. Within a key, first come, first served.

Waiters are told their position whenever it changes, so a frontend can show "you are 3rd in
line": their place in the order slots would be handed out if no holder finished out of turn
(the key holding the fewest first), an estimate when one does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import heapq
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from .errors import ErrorCategory, GenerationError

__all__ = ["GenerationPool"]


@dataclass(eq=False, slots=True)
class _Waiter:
    key: str | None
    position: int = 0
    granted: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class GenerationPool:
    """``limit`` slots and ``max_waiting`` places in line, at most ``per_key`` and
    ``per_key_waiting`` of them per key (0: no bound per key); see the module docstring."""

    def __init__(self, limit: int, max_waiting: int, *, per_key: int = 0, per_key_waiting: int = 0) -> None:
        if limit < 1:
            raise ValueError("a generation pool needs at least one slot")
        self.limit = limit
        self.max_waiting = max_waiting
        self.per_key = per_key
        self.per_key_waiting = per_key_waiting
        self.active = 0
        self.waiting = 0
        #: Slots held per key.
        self._held: collections.Counter[str | None] = collections.Counter()
        #: Each key's line, the keys in the order their turn comes (a key served goes to the end).
        self._lines: dict[str | None, collections.deque[_Waiter]] = {}

    @contextlib.asynccontextmanager
    async def slot(self, on_position: Callable[[int], Awaitable[None]], key: str | None = None) -> AsyncIterator[None]:
        """Hold a slot for the body, for ``key``; waits in line when none may be taken now.

        While waiting, ``await on_position(n)`` runs in the caller's task each time its place
        in line changes (1 is next), so what it sends stays in order with what follows.
        Raises ``GenerationError(overloaded)`` when the line, or the key's share of it, is full.
        """
        if self.active < self.limit and key not in self._lines and self._under_share(key):
            self._take(key)
        else:
            await self._wait(key, on_position)
        try:
            yield
        finally:
            self._release(key)

    def _under_share(self, key: str | None) -> bool:
        return not self.per_key or self._held[key] < self.per_key

    def _take(self, key: str | None) -> None:
        self.active += 1
        self._held[key] += 1

    async def _wait(self, key: str | None, on_position: Callable[[int], Awaitable[None]]) -> None:
        line = self._lines.get(key)
        if self.waiting >= self.max_waiting or (line and self.per_key_waiting and len(line) >= self.per_key_waiting):
            raise GenerationError(ErrorCategory.OVERLOADED, "Too many answers are waiting; try again in a moment.")
        waiter = _Waiter(key)
        self._lines.setdefault(key, collections.deque()).append(waiter)
        self.waiting += 1
        self._renumber()
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
                self._release(key)  # the slot was handed over just as we gave up: pass it on
            else:
                self._leave(waiter)
                self._renumber()
            raise

    def _release(self, key: str | None) -> None:
        """Hand the freed slot straight to the next waiter, so that nobody can overtake it."""
        self.active -= 1
        self._held[key] -= 1
        if not self._held[key]:
            del self._held[key]
        self._hand_out()

    def _hand_out(self) -> None:
        granted = False
        while self.active < self.limit:
            keys = [key for key in self._lines if self._under_share(key)]
            if not keys:
                break
            key = min(keys, key=lambda k: self._held[k])  # the first of the fewest: dicts keep the turn order
            waiter = self._lines[key][0]
            self._leave(waiter)
            if key in self._lines:  # its next waiter's turn comes after every other key's
                self._lines[key] = self._lines.pop(key)
            self._take(key)
            waiter.granted = True
            waiter.changed.set()
            granted = True
        if granted:
            self._renumber()

    def _leave(self, waiter: _Waiter) -> None:
        line = self._lines[waiter.key]
        line.remove(waiter)
        self.waiting -= 1
        if not line:
            del self._lines[waiter.key]

    def _renumber(self) -> None:
        """Positions in the order slots would go if no slot's holder changed: the key holding the
        fewest next, the first of equals in turn order, one waiter at a time."""
        turns = [(self._held[key], turn, key) for turn, key in enumerate(self._lines)]
        heapq.heapify(turns)
        served = dict.fromkeys(self._lines, 0)
        sequence = len(turns)
        for position in range(1, self.waiting + 1):
            held, _, key = heapq.heappop(turns)
            line = self._lines[key]
            waiter = line[served[key]]
            served[key] += 1
            if waiter.position != position:
                waiter.position = position
                waiter.changed.set()
            if served[key] < len(line):
                sequence += 1
                heapq.heappush(turns, (held + 1, sequence, key))
