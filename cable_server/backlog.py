"""Recent broadcasts per stream with their offsets: AnyCable's reliable streams, in process.

Streams are tracked once an extended-protocol client listens to them. Each broadcast on a
tracked stream gets the next offset (from 1) under this process's ``epoch``; the last ``limit``
are kept for ``ttl`` seconds, so a client that reconnects can ask for what came after the last
offset it saw (or since a time). Offsets are per process: a client that reconnects to another
process finds another epoch and is told the history is gone (``reject_history``).
"""

from __future__ import annotations

import collections
import secrets
import sys
import time
from collections.abc import Container
from dataclasses import dataclass, field

__all__ = ["Backlog", "HistoryGone"]


class HistoryGone(Exception):
    """The messages asked for are not here (another epoch, or evicted)."""


@dataclass(slots=True)
class _Stream:
    next_offset: int = 1
    touched: float = 0.0
    # (offset, Unix time, encoded payload)
    messages: collections.deque[tuple[int, float, str]] = field(default_factory=collections.deque)


class Backlog:
    """Per-stream offsets and recent broadcasts of this process (``epoch``), for ``history`` requests."""

    def __init__(self, *, limit: int = 100, ttl: float = 300.0, max_streams: int = 20_000, max_bytes: int = 64 << 20) -> None:
        self.limit = limit
        self.ttl = ttl
        #: Memory of the messages kept in all (``sys.getsizeof``: non-ASCII text counts at its real
        #: size); past it the oldest messages of the least recently used
        #: streams go first (a ``history`` that needs them is told they are gone).
        self.max_bytes = max_bytes
        self.bytes = 0
        #: Streams recorded at once; past it the least recently used one is forgotten (its
        #: clients are told ``reject_history`` should they ask), whatever clients subscribe to.
        self.max_streams = max_streams
        #: Changes when the process restarts: offsets from another epoch mean nothing here.
        self.epoch = secrets.token_hex(2)
        self._streams: collections.OrderedDict[str, _Stream] = collections.OrderedDict()  # least recent first

    def __len__(self) -> int:
        return len(self._streams)

    def track(self, stream: str) -> list[str]:
        """Start (or keep) recording ``stream``: an extended-protocol client listens to it.
        Returns the streams forgotten to stay within ``max_streams``."""
        entry = self._streams.setdefault(stream, _Stream())
        entry.touched = time.monotonic()
        self._streams.move_to_end(stream)
        forgotten = []
        while len(self._streams) > self.max_streams:
            stream, dropped = self._streams.popitem(last=False)
            self.bytes -= sum(sys.getsizeof(payload) for _, _, payload in dropped.messages)
            forgotten.append(stream)
        return forgotten

    def tracked(self, stream: str) -> bool:
        """Whether broadcasts on ``stream`` get offsets and are kept."""
        return stream in self._streams

    def record(self, stream: str, payload: str) -> int | None:
        """The offset of a broadcast on ``stream`` (``None`` when the stream is not tracked)."""
        entry = self._streams.get(stream)
        if entry is None:
            return None
        offset = entry.next_offset
        entry.next_offset += 1
        entry.touched = time.monotonic()
        self._streams.move_to_end(stream)
        entry.messages.append((offset, time.time(), payload))
        self.bytes += sys.getsizeof(payload)
        if len(entry.messages) > self.limit:
            self.bytes -= sys.getsizeof(entry.messages.popleft()[2])
        if self.bytes > self.max_bytes:
            self._shed()
        return offset

    def _shed(self) -> None:
        for entry in self._streams.values():  # least recently used first
            while entry.messages and self.bytes > self.max_bytes:
                self.bytes -= sys.getsizeof(entry.messages.popleft()[2])
            if self.bytes <= self.max_bytes:
                return

    def after(self, stream: str, epoch: str, offset: int) -> list[tuple[int, str]]:
        """Messages after ``offset``; raises :class:`HistoryGone` if they cannot all be given."""
        entry = self._streams.get(stream)
        if entry is None or epoch != self.epoch or offset >= entry.next_offset:
            raise HistoryGone(stream)
        kept = [(o, payload) for o, _, payload in entry.messages if o > offset]
        first = kept[0][0] if kept else entry.next_offset
        if first != offset + 1:
            raise HistoryGone(stream)
        return kept

    def since(self, stream: str, timestamp: int) -> list[tuple[int, str]]:
        """Messages broadcast at or after the Unix time ``timestamp`` (none for an unknown stream)."""
        entry = self._streams.get(stream)
        return [(o, payload) for o, at, payload in entry.messages if at >= timestamp] if entry else []

    def expire(self, live: Container[str] = ()) -> list[str]:
        """Forget streams untouched for ``ttl`` seconds, except ``live`` ones; returns them."""
        limit = time.monotonic() - self.ttl
        expired = [s for s, entry in self._streams.items() if entry.touched < limit and s not in live]
        for stream in expired:
            self.bytes -= sum(sys.getsizeof(payload) for _, _, payload in self._streams.pop(stream).messages)
        return expired
