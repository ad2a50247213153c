"""Sending a generation's frames into its room: each kept for ``resume`` before it is published,
and the last one (``done``, ``stopped``, ``error``) delivered to this process's screens whatever fails."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .. import encoding
from .generation import Generation
from .replay import FrameStore

if TYPE_CHECKING:
    from ..server import CableServer

__all__ = ["FrameSender"]

logger = logging.getLogger("cable_server.llm")

#: Seconds each step of sending an answer's last frame may take (storing it, publishing it).
_LAST_FRAME_TIMEOUT = 5.0


class FrameSender:
    """Numbers, keeps and publishes the frames of generations (``seq`` without gaps)."""

    def __init__(self, server: CableServer, frames: FrameStore) -> None:
        self._server = server
        self._frames = frames

    async def emit(self, generation: Generation, event: str, content: str = "", **fields: Any) -> None:
        """Keep and publish the next frame of ``generation``; if the publish fails, this process's
        screens still get it (it was kept) and the error is raised (the answer fails)."""
        frame = {"content": content, "event": event, "message_id": generation.message_id, "seq": generation.seq, **fields}
        await self._frames.append(generation.room, frame)  # kept before it is sent: a resume never misses it
        generation.seq += 1  # only now: a frame that could not be kept is sent by no one, and leaves no gap
        payload = encoding.dumps(frame)
        backend = self._server.router.backend
        try:
            await backend.broadcast(generation.room, payload)
        except Exception:
            self._server.router.dispatch(generation.room, payload)  # it was kept: this process's screens get it
            raise
        # Published while this process's own subscription was being made again, it may come back
        # or not; delivering it here too could show a token twice on a screen that appends
        # ``content``, so a lost one is left to ``resume`` (the last frame is the exception: end).

    async def end(self, generation: Generation, event: str, **fields: Any) -> None:
        """The frame that ends an answer (``done``, ``stopped``, ``error``): it reaches this
        process's subscribers of the room whatever fails. Kept for resume and published as
        usual when possible (each step bounded in time); published through nothing when the
        pub/sub fails, but delivered here directly, so no screen waits forever for the end."""
        frame = {"content": "", "event": event, "message_id": generation.message_id, "seq": generation.seq, **fields}
        generation.seq += 1
        room = generation.room
        try:
            async with asyncio.timeout(_LAST_FRAME_TIMEOUT):
                await self._frames.append(room, frame)
        except Exception as exc:
            logger.warning("generation %s: its %s frame is not kept for resume (%r)", generation.message_id, event, exc)
        payload = encoding.dumps(frame)
        backend = self._server.router.backend
        try:
            async with asyncio.timeout(_LAST_FRAME_TIMEOUT):
                await backend.broadcast(room, payload)
        except Exception as exc:
            logger.warning(
                "generation %s: cannot publish its %s frame (%r); delivered in this process only",
                generation.message_id,
                event,
                exc,
            )
            self._server.router.dispatch(room, payload)
        else:  # this process's subscription to Redis was lost during the answer: published frames may
            if backend.missed_since(generation.started):  # not come back, and the last must (twice at worst)
                self._server.router.dispatch(room, payload)
