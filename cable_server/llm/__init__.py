"""Streaming chat completions into rooms: models, settings, history, the pool and the service."""

from __future__ import annotations

from .errors import ErrorCategory, GenerationError
from .history import HistoryStore, MemoryHistory, RedisHistory
from .models import ChatModel, Delta, Message, OfflineModel, OpenAIModel
from .service import ChatService, Generation
from .settings import ChatSettings

__all__ = [
    "ChatModel",
    "ChatService",
    "ChatSettings",
    "Delta",
    "ErrorCategory",
    "Generation",
    "GenerationError",
    "HistoryStore",
    "MemoryHistory",
    "Message",
    "OfflineModel",
    "OpenAIModel",
    "RedisHistory",
]
