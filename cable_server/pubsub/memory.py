"""In-process pub/sub: the default backend, for a single server process (Rails' ``async``)."""

from __future__ import annotations

from .base import MessageHandler, PubSubBackend

__all__ = ["MemoryBackend"]


class MemoryBackend(PubSubBackend):
    """Delivers a broadcast synchronously, inside :meth:`broadcast`, to this process only.

    Synchronous delivery keeps the order of broadcasts exactly as they were made.
    """

    def __init__(self) -> None:
        self._channels: set[str] = set()
        self._on_message: MessageHandler | None = None

    async def start(self, on_message: MessageHandler) -> None:
        self._on_message = on_message

    async def stop(self) -> None:
        self._on_message = None
        self._channels.clear()

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)

    async def broadcast(self, channel: str, payload: str) -> None:
        if self._on_message is not None and channel in self._channels:
            self._on_message(channel, payload)
