"""The pub/sub seam: what a backend must do so broadcasts reach every server process.

A backend moves encoded payloads between processes; it knows nothing of connections. The
:class:`~cable_server.streams.StreamRouter` above it counts local listeners, subscribes a
channel once however many listeners it has, and fans each payload out in process.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

__all__ = ["MessageHandler", "PubSubBackend"]

#: Called by the backend with ``(channel, payload)`` for every message on a subscribed channel.
MessageHandler = Callable[[str, str], None]


class PubSubBackend(abc.ABC):
    """Five coroutines: start, stop, subscribe, unsubscribe, broadcast (and ``ping``, optional).

    ``subscribe`` returns only once the subscription is live (for Redis: the SUBSCRIBE was
    acknowledged), so a confirmation sent after it never misses a broadcast. Channel names
    are broadcasting names; a backend that needs a prefix (Rails' ``channel_prefix``) adds it
    itself and strips it before calling the handler.
    """

    @abc.abstractmethod
    async def start(self, on_message: MessageHandler) -> None:
        """Connect; from now on deliver every message of a subscribed channel to ``on_message``."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Disconnect; no more messages are delivered."""

    @abc.abstractmethod
    async def subscribe(self, channel: str) -> None:
        """Start receiving ``channel``; returns when the subscription is live."""

    @abc.abstractmethod
    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``."""

    def missed_since(self, when: float) -> bool:
        """Whether a broadcast published since ``when`` (``time.monotonic()``) may not have come
        back to this process: its subscription is down, or was made again after ``when``. Then
        a publisher that must reach this process's listeners delivers to them itself. In-process
        delivery never misses."""
        return False

    async def ping(self) -> None:
        """Raise :class:`~cable_server.errors.PubSubError` unless broadcasts flow right now (the
        server's readiness check). In-process delivery always does."""
        return None

    @abc.abstractmethod
    async def broadcast(self, channel: str, payload: str) -> None:
        """Publish an encoded JSON ``payload`` to every process subscribed to ``channel``.

        Raises :class:`~cable_server.errors.PubSubError` when it cannot be published.
        """
