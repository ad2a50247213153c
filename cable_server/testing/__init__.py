"""Helpers for testing applications built on cable-server (no network needed)."""

from __future__ import annotations

from .fake_openai import FakeOpenAI, Reply

__all__ = ["FakeOpenAI", "Reply"]
