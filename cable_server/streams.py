"""Local fan-out of broadcasts: one backend subscription per stream, one frame per identifier.

Every subscription that called ``stream_from`` is a :class:`Listener` here. A broadcast
arrives from the backend once per process; the router encodes nothing (the payload is already
ActiveSupport JSON), builds the data frame once per distinct identifier, and hands the same
string to every connection subscribed with that identifier.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .backlog import Backlog
from .errors import PubSubError
from .protocol import message_frame, stream_message_frame
from .pubsub import PubSubBackend

__all__ = ["Listener", "StreamRouter"]

logger = logging.getLogger("cable_server.streams")


@dataclass(eq=False, slots=True)
class Listener:
    """A receiver of one stream.

    With an ``identifier``, ``deliver`` gets the finished data frame for that identifier;
    without one, it gets the raw encoded payload (a custom ``stream_from`` callback, or the
    connection's internal channel).
    """

    deliver: Callable[[str], None]
    identifier: str | None = None
    #: An AnyCable extended-protocol client: its frames carry ``stream_id``/``epoch``/``offset``.
    extended: bool = False


@dataclass(eq=False, slots=True)
class _Stream:
    listeners: list[Listener] = field(default_factory=list)
    ready: asyncio.Task[None] | None = None


class StreamRouter:
    """Reference-counts streams over a :class:`PubSubBackend` and fans payloads out."""

    def __init__(self, backend: PubSubBackend) -> None:
        self.backend = backend
        self.backlog = Backlog()
        self._streams: dict[str, _Stream] = {}
        self._lock = asyncio.Lock()  # backend (un)subscribes run one at a time, in order
        self._tasks: set[asyncio.Task[None]] = set()
        #: Broadcasts the backend delivered (a metric; counted here, once per broadcast, not per frame).
        self.received = 0

    async def start(self) -> None:
        """Start the backend, delivering to :meth:`dispatch`."""
        await self.backend.start(self.dispatch)

    async def stop(self) -> None:
        """Forget every stream and stop the backend."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._streams.clear()
        await self.backend.stop()

    def __contains__(self, stream: str) -> bool:
        return stream in self._streams

    async def add(self, stream: str, listener: Listener) -> None:
        """Attach ``listener``; returns once the backend delivers ``stream`` to this process."""
        entry = self._streams.get(stream)
        if entry is None:
            entry = self._streams[stream] = _Stream()
            entry.ready = self._spawn(self._subscribe(stream))
        entry.listeners.append(listener)
        if listener.extended:
            self._untrack(self.backlog.track(stream))
        ready = entry.ready
        assert ready is not None
        if ready.done() and not ready.cancelled() and ready.exception() is None:
            return  # the stream is live already: the common case, without a shield per listener
        try:
            await asyncio.shield(ready)
        except PubSubError:
            self._detach(stream, listener)
            raise

    def remove(self, stream: str, listener: Listener) -> None:
        """Detach ``listener``; the backend subscription ends with the stream's last listener."""
        if self._detach(stream, listener):
            self._spawn(self._unsubscribe(stream))

    def _detach(self, stream: str, listener: Listener) -> bool:
        entry = self._streams.get(stream)
        if entry is None or listener not in entry.listeners:
            return False
        entry.listeners.remove(listener)
        if entry.listeners or self.backlog.tracked(stream):
            return False  # a tracked stream keeps recording for clients that come back
        del self._streams[stream]
        return True

    def dispatch(self, stream: str, payload: str) -> None:
        """Deliver one encoded payload to every local listener of ``stream``, in order."""
        self.received += 1
        offset = self.backlog.record(stream, payload)
        entry = self._streams.get(stream)
        if entry is None:
            return
        frames: dict[tuple[str, bool], str] = {}
        for listener in tuple(entry.listeners):
            identifier = listener.identifier
            if identifier is None:
                message = payload
            else:
                key = (identifier, listener.extended and offset is not None)
                message = frames.get(key) or frames.setdefault(key, self._frame(key, stream, payload, offset))
            try:
                listener.deliver(message)
            except Exception:
                logger.exception("stream %r: a listener failed", stream)

    def _frame(self, key: tuple[str, bool], stream: str, payload: str, offset: int | None) -> str:
        identifier, extended = key
        if extended and offset is not None:
            return stream_message_frame(identifier, payload, stream, self.backlog.epoch, offset)
        return message_frame(identifier, payload)

    def expire_backlog(self) -> None:
        """Drop the backlog of streams nobody listened to for its TTL, and their subscriptions."""
        listened = {stream for stream, entry in self._streams.items() if entry.listeners}
        self._untrack(self.backlog.expire(live=listened))

    def _untrack(self, streams: list[str]) -> None:
        """Streams the backlog no longer records: those nobody listens to are unsubscribed."""
        for stream in streams:
            if stream in self._streams and not self._streams[stream].listeners:
                del self._streams[stream]
                self._spawn(self._unsubscribe(stream))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _subscribe(self, stream: str) -> None:
        async with self._lock:
            try:
                await self.backend.subscribe(stream)
            except PubSubError:
                raise
            except Exception as exc:
                raise PubSubError(f"cannot subscribe to {stream!r}: {exc}") from exc

    async def _unsubscribe(self, stream: str) -> None:
        async with self._lock:
            if stream in self._streams:  # listened to again meanwhile: keep it
                return
            try:
                await self.backend.unsubscribe(stream)
            except Exception:
                logger.exception("cannot unsubscribe from %r", stream)
