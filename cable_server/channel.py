"""The application's ``Channel``: subscriptions, streams, actions, like ``ApplicationCable::Channel``.

A subclass is one channel. Its public methods are its actions, called by the client's
``perform(action, data)``; hooks and the API below never are. Methods may be plain or
``async``::

    class ChatChannel(Channel):
        def subscribed(self) -> None:
            self.stream_from(f"chat_{self.params['room']}")

        async def speak(self, data: dict[str, Any]) -> None:
            await self.server.broadcast(f"chat_{self.params['room']}", {"text": data["text"]})

Lifecycle of one subscription (one identifier string on one connection):
``subscribed`` runs; frames it transmits go out first; then, once every stream it opened is
live, ``confirm_subscription`` (or ``reject_subscription`` after :meth:`Channel.reject`);
then periodic timers start. ``unsubscribed`` runs on unsubscribe, rejection or disconnect,
after which streams and timers are stopped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from . import encoding, logs
from .errors import LimitExceeded, UnknownAction
from .limits import LimitKind
from .naming import channel_name_for, serialize_broadcasting
from .protocol import Perform, confirm_frame, message_frame, reject_frame
from .streams import Listener

if TYPE_CHECKING:
    from .connection import Connection
    from .server import CableServer
    from .session import Session

__all__ = ["Channel", "rescue_from"]

logger = logging.getLogger("cable_server.channel")

F = TypeVar("F", bound=Callable[..., Any])
_RESCUE_ATTR = "__cable_rescue_from__"


def rescue_from(*exceptions: type[BaseException]) -> Callable[[F], F]:
    """Mark a channel method as the handler of ``exceptions`` raised by actions and timers.

    The handler gets the exception and may ``transmit`` an error to the client::

        @rescue_from(ValueError)
        def invalid(self, error: ValueError) -> None:
            self.transmit({"error": str(error)})
    """

    def mark(func: F) -> F:
        setattr(func, _RESCUE_ATTR, exceptions)
        return func

    return mark


async def _call(func: Callable[..., Any], *args: Any) -> Any:
    result = func(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Channel:
    """Base class of every channel."""

    #: The ``channel`` value clients put in the identifier; defaults to the class name.
    identifier_name: ClassVar[str]
    #: Prefix of broadcastings made by :meth:`stream_for` (Rails' ``channel_name``).
    channel_name: ClassVar[str]

    #: Public methods that are hooks for subclasses to override, not actions a client may call
    #: (Rails would need them private; a Python override stays public).
    hooks: ClassVar[frozenset[str]] = frozenset()

    _actions: ClassVar[dict[str, bool]] = {}  # action name -> takes the data argument
    _rescuers: ClassVar[tuple[tuple[tuple[type[BaseException], ...], str], ...]] = ()
    _server: ClassVar[CableServer | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "identifier_name" not in cls.__dict__:
            cls.identifier_name = cls.__name__
        if "channel_name" not in cls.__dict__:
            cls.channel_name = channel_name_for(cls.identifier_name)
        rescuers: list[tuple[tuple[type[BaseException], ...], str]] = []
        actions: dict[str, bool] = {}
        for klass in cls.__mro__:
            if klass is Channel or not issubclass(klass, Channel):
                continue
            for name, member in reversed(list(vars(klass).items())):
                handled = getattr(member, _RESCUE_ATTR, None)
                if handled is not None:
                    rescuers.append((handled, name))
                elif (
                    inspect.isfunction(member)
                    and not name.startswith("_")
                    and not hasattr(Channel, name)
                    and name not in actions
                    and name not in cls.hooks
                ):
                    params = inspect.signature(member).parameters
                    actions[name] = len(params) > 1
        cls._rescuers = tuple(rescuers)
        cls._actions = actions

    def __init__(self, session: Session, identifier: str, params: dict[str, Any]) -> None:
        self._session = session
        #: The identifier string exactly as the client sent it.
        self.identifier = identifier
        #: The decoded identifier, ``"channel"`` included.
        self.params = params
        self._streams: dict[str, list[Listener]] = {}
        self._pending: list[Coroutine[Any, Any, None]] = []
        self._timers: list[tuple[Callable[[], Any], float]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._early: list[tuple[Callable[[str], None], str]] = []  # broadcasts that beat the confirmation
        self._rejected = False
        self._confirmed = False
        self._unsubscribed = False

    def __getattr__(self, name: str) -> Any:
        # Identifiers of the connection read as the channel's own attributes, as in Rails.
        session = self.__dict__.get("_session")
        if session is not None and name in session.connection.identified_by:
            return getattr(session.connection, name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    # --- hooks ----------------------------------------------------------------------------

    def subscribed(self) -> Any:
        """Called when the client subscribes; stream, transmit or :meth:`reject` here."""

    def unsubscribed(self) -> Any:
        """Called when the subscription ends (unsubscribe, rejection or disconnect)."""

    # --- API ------------------------------------------------------------------------------

    @property
    def connection(self) -> Connection:
        """The connection this subscription belongs to (its identifiers are readable on the channel too)."""
        return self._session.connection

    @property
    def server(self) -> CableServer:
        """The server: ``self.server.broadcast(...)`` reaches every subscriber in every process."""
        return self._session.server

    def transmit(self, data: Any) -> None:
        """Send ``data`` to this subscription's client only."""
        self._session.send(message_frame(self.identifier, encoding.dumps(data)))

    def reject(self) -> None:
        """Refuse the subscription: ``reject_subscription`` is sent instead of the confirmation."""
        self._rejected = True

    def stream_from(
        self,
        broadcasting: str,
        callback: Callable[[Any], Any] | None = None,
        *,
        raw: bool = False,
    ) -> None:
        """Deliver broadcasts on ``broadcasting`` to this subscription.

        Without ``callback`` each broadcast is sent to the client as is. With one, it is
        called with the decoded message (the encoded JSON text when ``raw``) and decides
        what to transmit. The confirmation waits until the stream is live. A ``broadcasting``
        longer than ``max_stream_name_length`` raises :class:`~cable_server.errors.LimitExceeded`
        (in ``subscribed``: the subscription is rejected).
        """
        if self._unsubscribed:
            return
        longest = self._session.server.settings.max_stream_name_length
        if len(broadcasting) > longest:
            raise LimitExceeded(LimitKind.STREAM_NAME_LENGTH, f"a stream name of {len(broadcasting)} characters")
        if callback is None:
            deliver = self._session.send if self._confirmed else self._deliver_after_confirmation
            listener = Listener(deliver, self.identifier, extended=self._session.protocol.extended)
        else:
            listener = Listener(self._stream_callback(callback, raw))
        self._streams.setdefault(broadcasting, []).append(listener)
        live = self._session.server.router.add(broadcasting, listener)
        if self._confirmed:
            self.start_task(live)
        else:
            self._pending.append(live)

    def stream_for(self, model: Any, callback: Callable[[Any], Any] | None = None) -> None:
        """:meth:`stream_from` the broadcasting of ``model`` on this channel."""
        self.stream_from(self.broadcasting_for(model), callback)

    def stop_stream_from(self, broadcasting: str) -> None:
        """Stop delivering broadcasts on ``broadcasting`` to this subscription."""
        for listener in self._streams.pop(broadcasting, []):
            self.server.router.remove(broadcasting, listener)

    def stop_stream_for(self, model: Any) -> None:
        """:meth:`stop_stream_from` the broadcasting of ``model`` on this channel."""
        self.stop_stream_from(self.broadcasting_for(model))

    def stop_all_streams(self) -> None:
        """Stop every stream of this subscription (it stays subscribed)."""
        for broadcasting in list(self._streams):
            self.stop_stream_from(broadcasting)

    @property
    def streams(self) -> list[str]:
        """The broadcastings this subscription listens to."""
        return list(self._streams)

    def periodically(self, method: Callable[[], Any], *, every: float) -> None:
        """Call ``method`` every ``every`` seconds while subscribed (first call after one period)."""
        if every <= 0:
            raise ValueError("every must be a positive number of seconds")
        if self._confirmed:
            self._start_timer(method, every)
        else:
            self._timers.append((method, every))

    @classmethod
    def broadcasting_for(cls, model: Any) -> str:
        """``<channel_name>:<model param>``, the broadcasting :meth:`stream_for` listens to."""
        return f"{cls.channel_name}:{serialize_broadcasting(model)}"

    @classmethod
    async def broadcast_to(cls, model: Any, message: Any) -> None:
        """Broadcast ``message`` to everyone streaming ``model`` on this channel."""
        if cls._server is None:
            raise RuntimeError(f"{cls.__name__} is not registered with a CableServer")
        await cls._server.broadcast(cls.broadcasting_for(model), message)

    def start_task(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in the background; it is cancelled when the subscription ends.

        Use it for long work in an action (a generation) so that the connection's next
        commands are not held back. Its exceptions go through the rescue handlers.
        """
        task = asyncio.ensure_future(self._guarded(coro, "task"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- driven by the session ------------------------------------------------------------

    async def _subscribe(self, *, confirm: bool = True) -> None:
        """Run ``subscribed`` and answer with exactly one confirm or reject frame (no confirm
        when ``confirm`` is false: a recovered session's client already counts it subscribed)."""
        await _call(self.subscribed)
        pending, self._pending = self._pending, []
        try:
            # One after the other: the router subscribes one stream at a time anyway, and a
            # task per stream (gather) was a tenth of the CPU a new connection costs.
            while pending and not self._rejected:
                await pending.pop(0)
        finally:
            for never_run in pending:
                never_run.close()
        if self._rejected:
            await self._unsubscribe()
            self._session.send(reject_frame(self.identifier))
            return
        self._confirmed = True
        if confirm:
            self._session.send(confirm_frame(self.identifier))
        early, self._early = self._early, []
        for deliver, payload in early:
            deliver(payload)
        for method, every in self._timers:
            self._start_timer(method, every)
        self._timers.clear()

    async def _unsubscribe(self) -> None:
        """Run ``unsubscribed``, then stop streams, timers and tasks (even if it raised)."""
        if self._unsubscribed:
            return
        self._unsubscribed = True
        try:
            await _call(self.unsubscribed)
        finally:
            self._stop()

    def _stop(self) -> None:
        self._unsubscribed = True
        self.stop_all_streams()
        for pending in self._pending:
            if isinstance(pending, asyncio.Future):
                pending.cancel()
            elif inspect.iscoroutine(pending):
                pending.close()
        self._pending.clear()
        for task in list(self._tasks):
            task.cancel()

    async def _perform(self, command: Perform) -> None:
        """Run the action ``command`` names (``receive`` when it names none) with its data."""
        action = command.action
        takes_data = None if action is None else self._actions.get(action)
        if action is None or takes_data is None:
            raise UnknownAction(f"{type(self).__name__} has no action {command.data.get('action', action)!r}")
        method = getattr(self, action)
        try:
            await (_call(method, command.data) if takes_data else _call(method))
        except Exception as exc:
            if not await self._rescue(exc):
                raise

    async def _rescue(self, exc: Exception) -> bool:
        for handled, name in self._rescuers:
            if isinstance(exc, handled):
                await _call(getattr(self, name), exc)
                return True
        return False

    async def _guarded(self, coro: Awaitable[Any], what: str) -> Any:
        try:
            return await coro
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            try:
                handled = await self._rescue(exc)
            except Exception:
                logger.exception("%s %s: rescue handler failed", logs.clip(self.identifier), what)
                return None
            if not handled:
                logger.exception("%s %s failed", logs.clip(self.identifier), what)
        return None

    def _start_timer(self, method: Callable[[], Any], every: float) -> None:
        async def tick() -> None:
            while True:
                await asyncio.sleep(every)
                await self._guarded(_call(method), f"timer {getattr(method, '__name__', method)!s}")

        task = asyncio.ensure_future(tick())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _deliver_after_confirmation(self, frame: str) -> None:
        """A broadcast that arrives while ``subscribed`` runs waits for the confirmation, so a
        client never gets a subscription's messages before learning it exists."""
        if self._confirmed:
            self._session.send(frame)
        elif not self._unsubscribed:
            self._early.append((self._session.send, frame))

    def _stream_callback(self, callback: Callable[[Any], Any], raw: bool) -> Callable[[str], None]:
        def deliver(payload: str) -> None:
            if not self._confirmed:
                if not self._unsubscribed:
                    self._early.append((deliver, payload))
                return
            message = payload if raw else encoding.loads(payload)
            result = callback(message)
            if inspect.isawaitable(result):
                self.start_task(result)

        return deliver
