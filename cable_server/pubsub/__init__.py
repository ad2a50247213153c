"""Pub/sub backends: how a broadcast reaches every server process."""

from __future__ import annotations

from .base import MessageHandler, PubSubBackend
from .memory import MemoryBackend

__all__ = ["MemoryBackend", "MessageHandler", "PubSubBackend"]
