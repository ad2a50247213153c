"""Helpers for testing applications built on cable-server (no network needed)."""

from __future__ import annotations

from .cable import CableTester, TestClient, TestSubscription
from .fake_openai import FakeOpenAI, Reply
from .redis_server import RedisServer

__all__ = ["CableTester", "FakeOpenAI", "RedisServer", "Reply", "TestClient", "TestSubscription"]
