"""``GptChatChannel``: the Rails channel that streams an OpenAI answer, served unchanged to its frontend.

The frontend written for Rails does::

    this.$cable.subscribe({ channel: 'GptChatChannel', room: this.user_id })
    this.$cable.perform({ channel: 'GptChatChannel', action: 'send_message',
      data: { user_content: '...', system_content: '...', user_id: this.user_id } })
    // received(data): text += data.content

and gets one ``{"content": ...}`` per upstream chunk on ``public_<room>``, in upstream order,
plus additive lifecycle keys (see :mod:`cable_server.llm.service`). Beyond the original:
``stop``, ``reset``, ``resume`` and ``history`` actions, conversation memory, and a rule on
whose answer a subscription may act on:

* identified connection (``identified_by`` set by ``connect``): the room is the user's own,
  broadcast as ``gpt_chat:<owner>`` (``broadcasting_for`` of it), never ``public_...``, so that no
  anonymous subscription can join it; subscribing to another is rejected (unless
  :meth:`GptChatChannel.user_room` gives users several rooms, each still theirs alone) and
  ``user_id`` in the data is ignored;
* anonymous connection: the client names the room when it subscribes, and every action of
  that subscription acts on that room only. A ``send_message`` whose ``user_id`` names another
  room is refused with a ``forbidden`` error frame to the sender alone (the Rails original
  streamed into the room ``user_id`` named, so anyone could write into anyone's screen).
  A room id is then a capability: whoever knows it can join the room.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import RedisError

from .. import logs
from ..channel import Channel
from ..errors import PubSubError
from ..limits import address_key
from ..llm.errors import ErrorCategory, GenerationError, classify
from ..llm.history import latest
from ..llm.service import ChatService, error_frame

__all__ = ["GptChatChannel", "room_name"]

logger = logging.getLogger("cable_server.channels.gpt_chat")


#: A replay (``resume``, or a request sent again) of this many frames costs one more visit: one
#: small command replays up to ``resume_max_frames`` frames, so repeated, they were an amplifier
#: (4 sockets resuming a long answer 45 times a second held a bystander's echo 8.5 s).
REPLAY_FRAMES_PER_VISIT = 1_000


def room_name(value: Any) -> str | None:
    """A room as Ruby's ``"public_#{room}"`` would print it; ``None`` when it cannot be one."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) or (isinstance(value, str) and value):
        return str(value)
    return None


def _request_id(value: Any) -> str | None:
    """A client's id for its request: a short string, else none."""
    return value if isinstance(value, str) and 0 < len(value) <= 100 else None


def _identity_room(value: Any) -> str | None:
    if isinstance(value, str | uuid.UUID) and str(value):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


class GptChatChannel(Channel):
    """``{"channel": "GptChatChannel", "room": <user id>}``; actions ``send_message``, ``stop``, ``reset``,
    ``resume`` and ``history``."""

    #: The room's broadcasting, set once subscribed: ``public_<room>`` as in the Rails original on
    #: an anonymous connection; ``gpt_chat:<owner>`` (``broadcasting_for`` of the owner's room
    #: name) on an identified one, a name no anonymous subscription can ever join.
    room: str | None = None
    _room_name: str | None = None  # the room as the client named it (as Ruby prints it)
    #: Overridable, never an action (called by a client, each call logged a traceback).
    hooks = frozenset({"user_room"})

    @property
    def chat(self) -> ChatService:
        """The server's chat service (installed from the environment on first use)."""
        return ChatService.of(self.server)

    @property
    def owner(self) -> str | None:
        """The identified user as a room name; ``None`` when it cannot be one.

        The first identifier of the connection, or its ``id`` attribute when it is a model: a
        non-empty string, an integer or a UUID. Override (as a property) to map users to rooms
        differently. On an identified connection ``None`` refuses every subscription: identity
        fails closed, it never falls back to the anonymous rules.
        """
        connection = self.connection
        for name in connection.identified_by:
            value = getattr(connection, name, None)
            if value is not None:
                return _identity_room(getattr(value, "id", value))
        return None

    @property
    def identified(self) -> bool:
        """Whether ``connect`` set any identifier (then rooms are bound to users); an empty string or
        ``False`` counts as set, so that it is refused rather than taken for anonymous."""
        return any(value is not None for value in self.connection.identifiers.values())

    def subscribed(self) -> None:
        if not self.identified:
            room = room_name(self.params.get("room"))
            if room is not None and self._visit(f"public_{room}") is not None:
                self.reject()
                return
            self._join(room, f"public_{room}")
            return
        owner = self.owner
        if owner is None:
            logger.error(
                "GptChatChannel refused %s: its identifiers give no room (override GptChatChannel.owner)",
                logs.clip(self.connection.connection_identifier or repr(self.connection.identifiers)),
            )
            self.reject()
            return
        room = self.user_room(owner, room_name(self.params.get("room", owner)))
        if room is None:
            self.reject()
            return
        self._join(room, self.broadcasting_for(room))

    def user_room(self, owner: str, requested: str | None) -> str | None:
        """On an identified connection, which of ``owner``'s rooms a subscription joins; ``None`` rejects it.

        ``requested`` is the ``room`` the subscription named, as Ruby prints it (``owner`` when it
        named none; ``None`` when what it named cannot be a room). The room returned is broadcast
        as ``broadcasting_for(room)``, and whoever is given the same room shares its conversation:
        so every room returned for ``owner`` must be ``owner``'s alone, built from it so that no
        other user's can spell it. By default a user has one room, ``owner`` itself, and a
        subscription naming another is rejected, as a frontend written for Rails expects (it
        subscribes with its user's id). Override to give users several rooms (a conversation
        each): the demo returns ``f"{owner}/{requested}"``, its owners never holding a ``/``.
        """
        return owner if requested == owner else None

    def _join(self, room: str | None, broadcasting: str) -> None:
        if room is None:
            self.reject()
            return
        self.stream_from(broadcasting)  # may raise (a room name over max_stream_name_length): not joined then
        self._room_name, self.room = room, broadcasting
        self.chat.listeners.joined(broadcasting)

    def unsubscribed(self) -> None:
        if self.room is not None:
            self.chat.listeners.left(self.room)

    async def send_message(self, data: dict[str, Any]) -> None:
        """Answer ``user_content`` into this subscription's room.

        ``user_id``, sent by the Rails frontend, must name that same room on an anonymous
        connection (a number or a string, as Ruby would print it), else a ``forbidden`` error
        frame goes to the sender alone; on an identified connection it is ignored.
        """
        room = self._own_room()
        request_id = _request_id(data.get("request_id"))
        request = {"request_id": request_id} if request_id is not None else {}
        try:
            self._check_user_id(data.get("user_id"))
            if request_id is None and data.get("request_id") is not None:
                raise GenerationError(ErrorCategory.INVALID_REQUEST, "request_id must be a string of 1 to 100 characters.")
            async with self._unless_unavailable("send_message", **request):
                if request_id is not None and (message_id := await self.chat.answered(room, request_id)) is not None:
                    if (refused := self._visit(room, always=True)) is not None:
                        raise refused
                    await self._replay(message_id, -1)  # sent again after a reconnect: it had arrived
                    return
                await self.chat.start(
                    room,
                    data.get("user_content"),
                    data.get("system_content"),
                    requester=self._requester(),
                    address=self._address(),
                    request_id=request_id,
                )
        except GenerationError as error:
            self.transmit(error_frame(error, **request))

    async def stop(self, data: dict[str, Any]) -> None:
        """Stop the answer being written (``message_id`` optional); it ends with a ``stopped`` frame."""
        async with self._unless_unavailable("stop"):
            await self.chat.stop(self._own_room(), data.get("message_id"))

    async def resume(self, data: dict[str, Any]) -> None:
        """Send again what this client missed of an answer: frames with ``seq > after_seq`` of
        ``message_id`` (the room's latest answer when absent), marked ``"replay": true``.

        Call it from ``connected()`` after every (re)connection; live frames follow, so keep frames
        by ``seq``. When the frames are gone, the answer is ``{"event": "expired"}``: ask ``history``.
        """
        message_id = data.get("message_id") if isinstance(data.get("message_id"), str) else None
        after_seq = data.get("after_seq")
        if not isinstance(after_seq, int) or isinstance(after_seq, bool):
            after_seq = -1
        if (refused := self._visit(self._own_room(), always=True)) is not None:
            self.transmit(error_frame(refused))
            return
        async with self._unless_unavailable("resume"):
            await self._replay(message_id, max(after_seq, -1))

    async def _replay(self, message_id: str | None, after_seq: int) -> None:
        replay = await self.chat.resume(self._own_room(), message_id, after_seq)
        if replay is None or replay.expired:
            if message_id is not None:
                self.transmit({"content": "", "event": "expired", "message_id": message_id})
            return
        more = len(replay.frames) // REPLAY_FRAMES_PER_VISIT
        if more and (refused := self._visit(self._own_room(), more, always=True)) is not None:
            self.transmit(error_frame(refused))
            return
        for frame in replay.frames:
            self.transmit({**frame, "replay": True})

    async def history(self) -> None:
        """The room's transcript: ``{"event": "history", "messages": [{role, content, ...}, ...]}``,
        each answer with its ``message_id``, ``status`` and ``reason``, the latest that fit in
        ``history_frame_bytes`` (``"truncated": true`` when older ones were left out); and what
        the chat is: ``model`` and ``max_prompt_chars`` (the longest ``user_content`` accepted)."""
        if (refused := self._visit(self._own_room())) is not None:
            self.transmit(error_frame(refused))
            return
        async with self._unless_unavailable("history"):
            chat = self.chat
            messages = await chat.history.transcript(self._own_room())
            kept = latest(messages, chat.settings.history_frame_bytes)
            frame: dict[str, Any] = {"content": "", "event": "history", "messages": kept}
            if len(kept) < len(messages):
                frame["truncated"] = True
            self.transmit({**frame, "model": chat.model.name, "max_prompt_chars": chat.settings.max_prompt_chars})

    async def reset(self) -> None:
        """Forget the conversation; every subscriber of the room gets a ``reset`` frame."""
        async with self._unless_unavailable("reset"):
            await self.chat.reset(self._own_room())

    @contextlib.asynccontextmanager
    async def _unless_unavailable(self, action: str, **fields: Any) -> AsyncIterator[None]:
        """Run an action that needs the shared store; when it (Redis) fails, the client is told
        with an ``unavailable`` error frame (with ``fields``) instead of hearing nothing."""
        try:
            yield
        except (RedisError, PubSubError) as exc:
            logger.warning("%s in %s failed: %r", action, logs.clip(self.room), exc)
            self.transmit(error_frame(classify(exc, started=False), **fields))

    def _visit(self, room: str, count: int = 1, *, always: bool = False) -> GenerationError | None:
        """Count ``count`` visits of ``room`` (see ``room_visits_per_minute_*``); the refusal when
        over it. Identified connections reach their own room only: counted only when ``always``
        (a replay, whose frames cost the server as much whoever asks for them)."""
        if self.identified and not always:
            return None
        try:
            self.chat.gate.visit(room, connection=self._requester(), address=self._address(), count=count)
        except GenerationError as refused:
            return refused
        return None

    def _address(self) -> str | None:
        """The client's address as per-address limits count it (an IPv6 address's /64)."""
        client = self.connection.request.client
        return address_key(client.host) if client else None

    def _requester(self) -> str:
        """Who counts against ``max_generations_per_user``: the identified user (all their tabs
        together), else this one connection."""
        return self.connection.connection_identifier or f"connection:{self.connection.log_id}"

    def _own_room(self) -> str:
        assert self.room is not None  # actions reach confirmed subscriptions only
        return self.room

    def _check_user_id(self, user_id: Any) -> None:
        if user_id is None or self.identified or room_name(user_id) == self._room_name:
            return
        logger.warning(
            "send_message refused: subscription to %s named user_id %s",
            logs.clip(self.room),
            logs.clip(repr(user_id), 64),
            extra={"room": logs.clip(self.room)},
        )
        raise GenerationError(
            ErrorCategory.FORBIDDEN, "user_id names another room than the one this subscription joined; nothing was sent."
        )
