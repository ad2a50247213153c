"""Pub/sub backends: in-process (the default) and Redis (many processes, shared with Rails)."""

from __future__ import annotations

from .base import MessageHandler, PubSubBackend
from .memory import MemoryBackend
from .redis import RedisBackend

__all__ = ["MemoryBackend", "MessageHandler", "PubSubBackend", "RedisBackend", "backend_from_url"]


def backend_from_url(url: str | None, *, channel_prefix: str | None = None) -> PubSubBackend:
    """``None``/``memory``/``async``: in-process; ``redis://``, ``rediss://``, ``unix://``: Redis."""
    if not url or url in ("memory", "async"):
        return MemoryBackend()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBackend(url, channel_prefix=channel_prefix)
    raise ValueError(f"unknown pub/sub {url!r}: use 'memory' or a redis:// URL")
