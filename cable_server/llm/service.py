"""The chat service: runs generations and broadcasts their frames into a room, in order.

A room is the broadcasting its answers go to (for ``GptChatChannel``, ``public_<room>`` when
anonymous, ``gpt_chat:<user>`` when identified). Each
room has at most one generation at a time. A generation is a task owned by the service, not
by the subscription that asked for it, so another tab of the same user keeps receiving it,
``stop`` from any of them ends it, and the connection's read loop never waits on the model.

Every frame of a generation is ``{"content": str, "event": ..., "message_id": ..., "seq": n}``
with ``seq`` counting from 0 without gaps: ``start`` (``question``, and the ``request_id`` the
client gave, if any), then ``queued`` (waiting for a slot,
with ``position``), ``delta`` (one per upstream chunk with text), and one of ``done``
(``finish_reason``, ``usage``), ``stopped`` (``reason``) or ``error`` (``error``:
``{category, message}``). A frontend that only does ``text += data.content`` shows the answer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from .. import encoding, logs
from ..errors import PubSubError
from ..limits import LimitKind
from ..streams import Listener
from .admission import Gate
from .claims import CONTROL_STREAM, Claims, LocalClaims, RedisClaims
from .deadline import deadline
from .errors import ErrorCategory, GenerationError, classify
from .frames import FrameSender
from .generation import Generation
from .history import HistoryStore, MemoryHistory, RedisHistory
from .listeners import RoomListeners
from .models import ChatModel, Message, model_for
from .pool import GenerationPool
from .replay import FrameStore, MemoryFrameStore, RedisFrameStore, Replay
from .settings import ChatSettings
from .stats import GenerationStats

if TYPE_CHECKING:
    from ..server import CableServer

__all__ = ["ChatService", "Generation", "error_frame"]

logger = logging.getLogger("cable_server.llm")

_EXTENSION = "gpt_chat"


def error_frame(error: GenerationError, **fields: Any) -> dict[str, Any]:
    """An ``error`` frame, for a request refused before it became a generation too (a ``busy``
    one names the answer being written: ``message_id``)."""
    if error.message_id is not None:
        fields = {"message_id": error.message_id, **fields}
    return {"content": "", "event": "error", **fields, "error": error.as_dict()}


def _busy(message_id: str) -> GenerationError:
    return GenerationError(
        ErrorCategory.BUSY, f"An answer ({message_id}) is still being written; stop it or wait.", message_id=message_id
    )


class ChatService:
    """Generations, the pool that bounds them, the rooms' history, and who listens where."""

    def __init__(
        self,
        server: CableServer,
        settings: ChatSettings | None = None,
        *,
        model: ChatModel | None = None,
        history: HistoryStore | None = None,
        frames: FrameStore | None = None,
        claims: Claims | None = None,
    ) -> None:
        self.server = server
        self.settings = settings = settings or ChatSettings.from_env()
        self.model = model or model_for(settings)
        bounds: dict[str, Any] = {
            "max_messages": settings.history_messages,
            "max_tokens": settings.history_tokens,
            "keep": settings.transcript_messages,
            "room_bytes": settings.history_room_bytes,
            "max_bytes": settings.history_max_bytes,
            "ttl": settings.history_ttl,
        }
        if history is None:
            history = (
                RedisHistory(settings.history_url, prefix=settings.history_prefix, **bounds)
                if settings.history_url
                else MemoryHistory(**bounds)
            )
        self.history = history
        if frames is None:
            kept: dict[str, Any] = {"ttl": settings.resume_ttl, "max_frames": settings.resume_max_frames}
            kept["max_bytes"] = settings.resume_max_bytes
            frames = (
                RedisFrameStore(settings.history_url, prefix=settings.history_prefix, **kept)
                if settings.history_url
                else MemoryFrameStore(**kept)
            )
        self.frames = frames
        #: Sends each generation's frames: kept for ``resume``, then published.
        self.sender = FrameSender(server, frames)
        if claims is None:
            claims = RedisClaims(settings.history_url, prefix=settings.history_prefix) if settings.history_url else LocalClaims()
        #: Who writes each room's answer across processes (see :mod:`cable_server.llm.claims`).
        self.claims = claims
        per_address = {"per_key": settings.max_concurrent_per_address, "per_key_waiting": settings.max_queued_per_address}
        self.pool = GenerationPool(settings.max_concurrent, settings.max_queued, **per_address)
        #: What a request must pass: its bounds and the model budget (see :mod:`.admission`).
        self.gate = Gate(settings, server.metrics)
        self.active: dict[str, Generation] = {}
        self._per_requester: collections.Counter[str] = collections.Counter()
        self._metrics = server.metrics.generations
        #: Who listens where; ends the answers nobody hears any more (see :mod:`.listeners`).
        self.listeners = RoomListeners(self)
        #: Stop requests from the other processes (see :meth:`_hear_stops`).
        self._control_listener = Listener(self._on_control)
        self._control: asyncio.Future[None] | None = None

    @classmethod
    def install(cls, server: CableServer, settings: ChatSettings | None = None, **options: Any) -> ChatService:
        """Attach a service to ``server`` (replacing any); it is closed when the server stops."""
        service = cls(server, settings, **options)
        server.extensions[_EXTENSION] = service
        server.on_drain(service.interrupt)
        server.on_stop(service.close)
        logger.info("chat model: %s%s", service.model.name, " (offline demo)" if service.settings.offline else "")
        return service

    @classmethod
    def of(cls, server: CableServer) -> ChatService:
        """The server's service, installed from the environment on first use."""
        service = server.extensions.get(_EXTENSION)
        if not isinstance(service, ChatService):
            service = cls.install(server)
        return service

    # --- requests -------------------------------------------------------------------------

    async def start(
        self,
        room: str,
        user_content: Any,
        system_content: Any = None,
        *,
        requester: str | None = None,
        address: str | None = None,
        request_id: str | None = None,
    ) -> Generation:
        """Begin answering ``user_content`` into ``room``; the frames follow from a task.

        Raises :class:`GenerationError` (``invalid_request``, ``busy``, ``rate_limited``) when it
        cannot begin: one generation per room (in every process sharing the claims),
        ``max_generations_per_user`` per ``requester``, the model budget of ``requester``, of the
        client ``address`` and of the process. The room's running answer to the same
        ``request_id`` is returned as is.
        """
        settings = self.settings
        system = self.gate.system_prompt(room, user_content, system_content)
        running = self.active.get(room)
        if running is not None:
            if request_id is not None and running.request_id == request_id:
                return running
            raise _busy(running.message_id)
        if requester is not None and self._per_requester[requester] >= settings.max_generations_per_user:
            self.gate.refused(
                LimitKind.GENERATIONS_PER_USER, room, f"{logs.clip(requester)} has {self._per_requester[requester]} running"
            )
            raise GenerationError(
                ErrorCategory.BUSY, f"You have {settings.max_generations_per_user} answers being written; stop one or wait."
            )
        self.gate.charge(room, user_content, system, requester=requester, address=address)
        generation = Generation(room, user_content, request_id, requester=requester, address=address)
        self._track(generation)  # before the claim is awaited: a second request meanwhile is busy here
        try:
            elsewhere = await self.claims.claim(room, generation.message_id)
        except Exception as exc:
            self._untrack(generation)
            logger.warning("generation refused in %s: cannot claim the room (%s)", logs.clip(room), exc)
            raise classify(exc, started=False) from exc
        except BaseException:
            self._untrack(generation)
            raise
        if elsewhere is not None:
            self._untrack(generation)
            raise _busy(elsewhere)
        generation.task = asyncio.ensure_future(self._run(generation, system))
        return generation

    def _track(self, generation: Generation) -> None:
        self.active[generation.room] = generation
        if generation.requester is not None:
            self._per_requester[generation.requester] += 1

    def _untrack(self, generation: Generation) -> None:
        if self.active.get(generation.room) is generation:
            del self.active[generation.room]
        if generation.requester is not None:
            self._per_requester[generation.requester] -= 1
            if self._per_requester[generation.requester] <= 0:
                del self._per_requester[generation.requester]

    async def stop(self, room: str, message_id: Any = None, *, reason: str = "stopped") -> bool:
        """Cancel the room's generation (only ``message_id`` if given) and wait until it ended,
        in this process or, through the control stream, in the one writing it."""
        generation = self.active.get(room)
        if generation is not None and generation.task is not None:
            if message_id not in (None, generation.message_id):
                return False
            generation.cancel(reason)
            await asyncio.gather(generation.task, return_exceptions=True)
            return True
        holder = await self.claims.holder(room)
        if holder is None or message_id not in (None, holder):
            return False
        request = {"room": room, "stop": holder, "reason": reason}
        for attempt in range(100):  # until its claim is released: the answer ended (5 s at most)
            if attempt % 4 == 0:  # sent again: one sent before that process listened is lost
                await self.server.broadcast(CONTROL_STREAM, request)
            await asyncio.sleep(0.05)
            if await self.claims.holder(room) != holder:
                break
        return True

    async def answered(self, room: str, request_id: str) -> str | None:
        """The ``message_id`` of the room's latest answer if it answers ``request_id`` (a request
        the client sent again, not knowing whether it arrived), running or ended."""
        running = self.active.get(room)
        if running is not None and running.request_id == request_id:
            return running.message_id
        first = await self.frames.first(room)
        if first is not None and first.get("request_id") == request_id:
            return str(first["message_id"])
        return None

    async def resume(self, room: str, message_id: str | None, after_seq: int) -> Replay | None:
        """The frames of ``room``'s answer ``message_id`` (its latest when ``None``) after ``after_seq``."""
        return await self.frames.replay(room, message_id, after_seq)

    async def reset(self, room: str) -> None:
        """Stop the room's generation, forget its conversation (and its last answer's frames, so
        that a ``resume`` does not bring it back), and tell its subscribers."""
        await self.stop(room, reason="reset")
        await self.history.clear(room)
        await self.frames.forget(room)
        await self.server.broadcast(room, {"content": "", "event": "reset"})

    async def interrupt(self) -> None:
        """Stop every answer this process writes (``stopped``, reason ``shutdown``) while its
        clients are still connected: the server is about to tell them to go."""
        await asyncio.gather(*(self.stop(room, reason="shutdown") for room in list(self.active)))

    async def close(self) -> None:
        """Cancel every generation (closing its upstream stream), then the model's client."""
        self.listeners.close()
        if self._control is not None:
            self._control.cancel()
            self.server.router.remove(CONTROL_STREAM, self._control_listener)
        await asyncio.gather(*(self.stop(room, reason="shutdown") for room in list(self.active)))
        await self.model.close()
        await self.claims.close()
        await self.history.close()
        await self.frames.close()

    # --- one generation -------------------------------------------------------------------

    async def _hear_stops(self) -> None:
        """Listen to the other processes' stop requests, once per process (claims shared only)."""
        if not self.claims.shared:
            return
        if self._control is None:
            self._control = asyncio.ensure_future(self.server.router.add(CONTROL_STREAM, self._control_listener))
        try:
            await asyncio.shield(self._control)
        except PubSubError:  # the next answer tries again
            self._control = None
            raise

    def _on_control(self, payload: str) -> None:
        """A stop request from another process: for the room's answer if it runs here."""
        try:
            message: Any = encoding.loads(payload)
        except encoding.DecodeError:
            return
        if not isinstance(message, dict) or not isinstance(message.get("room"), str):
            return
        generation = self.active.get(message["room"])
        if generation is not None and message.get("stop") == generation.message_id:
            reason = message.get("reason")
            generation.cancel(reason if isinstance(reason, str) else "stopped")

    async def _run(self, generation: Generation, system: str | None) -> None:
        """Generate, release the room, then send the last frame: a client that asks again as soon
        as it sees an answer end must find the room free, here and in Redis."""
        stats = GenerationStats()
        async with self.claims.held(generation.room, generation.message_id):
            outcome, event, fields = await self._generate(generation, system, stats)
        await self.sender.end(generation, event, **fields)
        stats.report(generation.message_id, generation.room, self.model.name, outcome, self._metrics)

    async def _generate(
        self, generation: Generation, system: str | None, stats: GenerationStats
    ) -> tuple[str, str, dict[str, Any]]:
        """Stream the answer; how it ended: the outcome logged, and the last frame's event and fields."""
        generation.running = True
        self._metrics.active.inc()
        outcome = "done"
        try:
            request = {"request_id": generation.request_id} if generation.request_id is not None else {}
            await self.sender.emit(generation, "start", question=generation.question, **request)
            await self._hear_stops()  # after the start frame: a resume finds the answer sooner
            generation.raise_if_cancelled()
            messages: list[Message] = [{"role": "system", "content": system}] if system else []
            messages += await self.history.load(generation.room)
            messages.append({"role": "user", "content": generation.question})
            generation.raise_if_cancelled()

            async def queued(position: int) -> None:
                await self.sender.emit(generation, "queued", position=position)

            async with self.pool.slot(queued, generation.address):
                stats.requested = time.monotonic()
                await self._stream(generation, messages, stats)
            return outcome, "done", {"finish_reason": stats.finish_reason, "usage": stats.usage}
        except asyncio.CancelledError:
            outcome = generation.cancel_reason or "cancelled"
            if generation.cancel_reason is None:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            return outcome, "stopped", {"reason": generation.cancel_reason}
        except Exception as exc:
            error = classify(exc, started=stats.first_token is not None)
            outcome = f"error:{error.category}"
            self._metrics.errors.labels(error.category.value).inc()
            if error.category is ErrorCategory.OVERLOADED:
                self.gate.refused(LimitKind.GENERATIONS_TOTAL, generation.room, f"{self.pool.waiting} waiting for a slot")
            if error.category is ErrorCategory.INTERNAL:
                logger.exception("generation %s failed", generation.message_id)
            elif error.detail is not None:
                logger.warning("generation %s failed (%s): %s", generation.message_id, error.category, logs.clip(error.detail))
            return outcome, "error", {"error": error.as_dict(detail=self.settings.expose_provider_errors)}
        finally:
            self._metrics.active.dec()
            try:
                await self._remember(generation, outcome, stats)  # before the room is free: the next question sees it
            finally:
                self._untrack(generation)

    async def _stream(self, generation: Generation, messages: Sequence[Message], stats: GenerationStats) -> None:
        """Relay the model's deltas as ``delta`` frames, under the first-token and stall deadlines."""
        settings = self.settings
        first_token_in = stats.requested + settings.first_token_timeout - time.monotonic()
        async with contextlib.aclosing(self.model.stream(messages)) as deltas, deadline(first_token_in) as timer:
            async for delta in deltas:
                generation.raise_if_cancelled()
                if delta.content:
                    if stats.first_token is None:
                        stats.first_token = time.monotonic()
                    timer.in_(settings.stall_timeout)
                    stats.chunks += 1
                    generation.text.append(delta.content)
                    await self.sender.emit(generation, "delta", delta.content)
                elif stats.first_token is not None:
                    timer.in_(settings.stall_timeout)
                stats.finish_reason = delta.finish_reason or stats.finish_reason
                stats.usage = delta.usage or stats.usage
        if stats.finish_reason is None:
            raise GenerationError(ErrorCategory.CONNECTION, "The model provider ended the stream before the answer was complete.")

    async def _remember(self, generation: Generation, outcome: str, stats: GenerationStats) -> None:
        """Add the turn to the transcript, its answer marked with how it ended (not when the
        answer was stopped by ``reset``: the conversation is being forgotten)."""
        status, _, reason = outcome.partition(":")  # "done", "error:<category>", or why it stopped
        if status == "done":
            reason = stats.finish_reason or ""
        elif status == "reset":
            return
        elif status != "error":
            status, reason = "stopped", outcome
        answer = {"role": "assistant", "content": generation.answer, "message_id": generation.message_id}
        try:
            question: Message = {"role": "user", "content": generation.question}
            await self.history.append(generation.room, question, {**answer, "status": status, "reason": reason})
        except RedisError as exc:  # an outage, already logged where it is noticed
            logger.warning("generation %s: cannot save the conversation (%r)", generation.message_id, exc)
        except Exception:
            logger.exception("generation %s: cannot save the conversation", generation.message_id)
