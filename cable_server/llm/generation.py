"""One answer being written: its room, id, frame counter, text, and how it is cancelled."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field

__all__ = ["Generation"]


@dataclass(eq=False)
class Generation:
    """One answer being streamed into ``room``."""

    room: str
    #: What the user asked (sent again in the ``start`` frame, for screens that did not see it asked).
    question: str = ""
    #: The id the client gave its ``send_message`` (``request_id``): the same request sent again
    #: (after a reconnect) is this answer, not a new one.
    request_id: str | None = None
    message_id: str = field(default_factory=lambda: f"msg_{secrets.token_hex(8)}")
    seq: int = 0
    text: list[str] = field(default_factory=list)
    #: Why the service cancelled it (``stopped``, ``reset``, ``no_subscribers``, ``shutdown``).
    cancel_reason: str | None = None
    task: asyncio.Task[None] | None = None
    running: bool = False
    #: Who asked for it (the user's connection identifier, or one connection's id), for the
    #: per-user limit; ``None``: nobody in particular.
    requester: str | None = None
    #: The client's address, whose fair share of the pool it takes; ``None``: unknown.
    address: str | None = None
    #: ``time.monotonic()`` when it was asked for.
    started: float = field(default_factory=time.monotonic)

    def cancel(self, reason: str) -> None:
        """End it with a ``stopped`` frame giving ``reason``; the first reason given wins."""
        if self.cancel_reason is None and self.task is not None:
            self.cancel_reason = reason
            # A task cancelled before its first step would never run its handlers: it checks
            # ``cancel_reason`` itself when it starts.
            if self.running:
                self.task.cancel()

    def raise_if_cancelled(self) -> None:
        """Raise ``CancelledError`` if :meth:`cancel` was called.

        ``task.cancel()`` alone is not enough: on uvloop, redis-py sometimes catches the
        ``CancelledError`` thrown into a command it is awaiting and carries on (seen in about one
        cancellation in six landing there), so the generation checks at its next steps too.
        """
        if self.cancel_reason is not None:
            raise asyncio.CancelledError

    @property
    def answer(self) -> str:
        """The text streamed so far."""
        return "".join(self.text)
