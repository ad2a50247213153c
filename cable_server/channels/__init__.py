"""Channels that ship with cable-server."""

from __future__ import annotations

from .gpt_chat import GptChatChannel

__all__ = ["GptChatChannel"]
