"""A connection's subscriptions, keyed by the identifier string exactly as the client sent it.

Carries out ``subscribe``/``unsubscribe``/``message`` commands, one at a time, in the order
they arrived. Errors are raised to the session, which logs them; Rails sends nothing for
any of them and neither do we, except where a setting says otherwise (unknown channel and
failed ``subscribed``: ``reject_subscription`` by default, so the client stops retrying).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import logs
from .backlog import HistoryGone
from .errors import LimitExceeded, UnknownChannel, UnknownSubscription
from .limits import LimitKind
from .protocol import History, Perform, Subscribe, Unsubscribe, history_frame, reject_frame, stream_message_frame

if TYPE_CHECKING:
    from .channel import Channel
    from .session import Session

__all__ = ["Subscriptions"]

logger = logging.getLogger("cable_server.subscriptions")


class Subscriptions:
    """The subscriptions of one connection, keyed by identifier string."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._channels: dict[str, Channel] = {}
        self._metrics = session.server.metrics  # counts every server's subscriptions as they change

    def __contains__(self, identifier: str) -> bool:
        return identifier in self._channels

    def __len__(self) -> int:
        return len(self._channels)

    @property
    def identifiers(self) -> list[str]:
        """The subscribed identifiers, in subscription order."""
        return list(self._channels)

    def snapshot(self) -> list[str]:
        """The identifier of every subscription, for session recovery."""
        return list(self._channels)

    async def add(self, command: Subscribe, *, confirm: bool = True) -> None:
        """Subscribe; a second subscribe for a live identifier is ignored (never confirmed twice).

        Beyond ``max_subscriptions``, or for an identifier over ``max_identifier_length``, the
        answer is ``reject_subscription`` (Rails has neither limit).
        """
        if command.identifier in self._channels:
            logger.debug("already subscribed to %s", logs.clip(command.identifier))
            return
        server = self._session.server
        longest = server.settings.max_identifier_length
        if len(command.identifier) > longest:
            self._session.send(reject_frame(command.identifier))
            raise LimitExceeded(LimitKind.IDENTIFIER_LENGTH, f"rejected an identifier of {len(command.identifier)} characters")
        limit = server.settings.max_subscriptions
        if len(self._channels) >= limit:
            self._session.send(reject_frame(command.identifier))
            raise LimitExceeded(LimitKind.SUBSCRIPTIONS, f"rejected {command.identifier}: {limit} subscriptions already")
        channel_class = server.channel_for(command.channel)
        if channel_class is None:
            if not server.settings.rails_exact:
                self._session.send(reject_frame(command.identifier))
            raise UnknownChannel(f"no channel named {command.channel!r}")
        channel = channel_class(self._session, command.identifier, command.params)
        # Registered before ``subscribed`` runs, so a duplicate sent meanwhile is ignored.
        self._channels[command.identifier] = channel
        self._metrics.subscriptions += 1
        try:
            await channel._subscribe(confirm=confirm)
        except BaseException:
            await self._forget(channel, notify=not server.settings.rails_exact)
            raise
        if channel._rejected:
            self._drop(command.identifier)

    async def remove(self, command: Unsubscribe) -> None:
        """Unsubscribe; no acknowledgement is sent, as in Rails."""
        channel = self._find(command.identifier)
        self._drop(command.identifier)
        await channel._unsubscribe()

    async def perform(self, command: Perform) -> None:
        """Run the action of a ``message`` command on its subscription."""
        await self._find(command.identifier)._perform(command)

    async def unsubscribe_all(self) -> None:
        """Run every channel's ``unsubscribed`` (the connection is closing); errors are logged."""
        channels, self._channels = list(self._channels.values()), {}
        self._metrics.subscriptions -= len(channels)
        for channel in channels:
            try:
                await channel._unsubscribe()
            except Exception:
                logger.exception("%s: unsubscribed failed", logs.clip(channel.identifier))

    def history(self, command: History) -> None:
        """AnyCable's history: the subscription's missed broadcasts, then ``confirm_history``;
        ``reject_history`` when any of them is gone (or nothing was asked)."""
        channel = self._find(command.identifier)
        request = command.request
        backlog = self._session.server.router.backlog
        frames: list[str] = []
        try:
            if request.since is None and not request.streams:
                raise HistoryGone("neither since nor streams")
            for stream in channel.streams:
                if stream in request.streams:
                    messages = backlog.after(stream, *request.streams[stream])
                elif request.since is not None:
                    messages = backlog.since(stream, request.since)
                else:
                    continue
                frames += [stream_message_frame(channel.identifier, payload, stream, backlog.epoch, o) for o, payload in messages]
        except HistoryGone as gone:
            logger.info("history for %s not available: %s", logs.clip(channel.identifier), logs.clip(gone))
            self._session.send(history_frame(channel.identifier, confirmed=False))
            return
        for frame in frames:
            self._session.send(frame)
        self._session.send(history_frame(channel.identifier, confirmed=True))

    def _drop(self, identifier: str) -> None:
        if self._channels.pop(identifier, None) is not None:
            self._metrics.subscriptions -= 1

    def _find(self, identifier: str) -> Channel:
        try:
            return self._channels[identifier]
        except KeyError:
            raise UnknownSubscription(f"no subscription with identifier {identifier!r}") from None

    async def _forget(self, channel: Channel, *, notify: bool) -> None:
        """Drop a subscription whose ``subscribed`` raised: no half-alive subscription is kept."""
        self._drop(channel.identifier)
        channel._stop()
        if notify:
            self._session.send(reject_frame(channel.identifier))
