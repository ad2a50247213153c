"""AnyCable session recovery: a client that reconnects with ``?sid=<its last sid>`` gets its
connection identity and subscriptions back without ``connect`` running again.

Snapshots are kept in process for ``recovery_ttl`` seconds after the socket closed; a client that lands
on another process simply gets a fresh session (and its client resubscribes with history).
The sid is a 96-bit random bearer secret, as in AnyCable.

Recovery skips ``connect``, so it is bounded as a credential is: a snapshot restores only
within ``recovery_max_age`` seconds of the authentication it descends from (restoring hands out a new
sid but never renews that clock), never after the connection's ``expires_at`` (a token's
``exp``), and never after a remote disconnect of its identity, which is listened for while a
snapshot of that identity is kept.
"""

from __future__ import annotations

import collections
import functools
import logging
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import encoding, logs
from .errors import PubSubError
from .streams import Listener

if TYPE_CHECKING:
    from .server import CableServer

__all__ = ["SessionCache", "Snapshot"]

logger = logging.getLogger("cable_server.restore")


@dataclass(frozen=True, slots=True)
class Snapshot:
    #: ``identified_by`` name -> value of the closed connection.
    identifiers: dict[str, Any]
    #: The identifier of each live subscription, in subscription order (decoded again when
    #: restored: the strings are all that is kept).
    subscriptions: list[str]
    #: The connection identifier (``""``: anonymous), whose remote disconnect revokes the snapshot.
    identity: str = ""
    #: ``time.monotonic()`` when ``connect`` authenticated the chain of sessions this one ends.
    authenticated_at: float = 0.0
    #: Wall-clock time (``time.time()``) when the credentials expire (a token's ``exp``); ``None``: never.
    expires_at: float | None = None


@dataclass(slots=True)
class _Kept:
    snapshot: Snapshot
    #: ``time.monotonic()`` after which it is forgotten.
    deadline: float
    #: What it holds, for ``recovery_max_bytes``: its identifiers' memory and a little more.
    size: int = 0


def _size(snapshot: Snapshot) -> int:
    return 256 + sum(sys.getsizeof(identifier) + 8 for identifier in snapshot.subscriptions)


class SessionCache:
    """Snapshots of closed extended-protocol connections, by sid, for ``recovery_ttl`` seconds,
    within ``recovery_max_age`` of their authentication, and ``recovery_max_bytes`` in all (the
    oldest forgotten first): the server's settings."""

    def __init__(self, server: CableServer) -> None:
        self._server = server
        #: Roughly the memory the kept snapshots hold (see ``recovery_max_bytes``).
        self.bytes = 0
        self._kept: dict[str, _Kept] = {}
        self._sids: collections.defaultdict[str, set[str]] = collections.defaultdict(set)
        self._watching: dict[str, Listener] = {}

    async def save(self, sid: str, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` for recovering ``sid``, unless it could not be restored anyway.

        For an identified snapshot, returns once remote disconnects of that identity reach
        this process (they revoke it); if they cannot, nothing is kept.
        """
        self.expire()
        settings = self._server.settings
        deadline = min(time.monotonic() + settings.recovery_ttl, snapshot.authenticated_at + settings.recovery_max_age)
        if not self._valid(snapshot, deadline):
            return
        identity = snapshot.identity
        if identity and identity not in self._watching:
            listener = Listener(functools.partial(self._on_internal_message, identity))
            self._watching[identity] = listener
            try:
                await self._server.router.add(self._server.internal_channel(identity), listener)
            except PubSubError as exc:
                logger.warning(
                    "a session of %s not kept for recovery: cannot listen for remote disconnects (%s)", logs.clip(identity), exc
                )
                self._unwatch(identity)
                return
        kept = self._kept[sid] = _Kept(snapshot, deadline, _size(snapshot))
        self.bytes += kept.size
        if identity:
            self._sids[identity].add(sid)
        while self.bytes > settings.recovery_max_bytes:
            self._forget(next(iter(self._kept)))  # the oldest first

    def take(self, sid: str | None) -> Snapshot | None:
        """The snapshot of ``sid``, once, while it may still be restored: a sid restores one connection."""
        self.expire()
        kept = self._kept.get(sid) if sid else None
        if kept is None or sid is None:
            return None
        self._forget(sid)
        return kept.snapshot if self._valid(kept.snapshot, kept.deadline) else None

    def revoke(self, identity: str) -> None:
        """Forget every snapshot of ``identity`` (its remote disconnect)."""
        for sid in tuple(self._sids.get(identity, ())):
            self._forget(sid)

    def expire(self) -> None:
        """Forget snapshots past their deadline or their credentials' expiry."""
        for sid in [sid for sid, kept in self._kept.items() if not self._valid(kept.snapshot, kept.deadline)]:
            self._forget(sid)

    @staticmethod
    def _valid(snapshot: Snapshot, deadline: float) -> bool:
        return time.monotonic() < deadline and (snapshot.expires_at is None or time.time() < snapshot.expires_at)

    def _forget(self, sid: str) -> None:
        kept = self._kept.pop(sid)
        self.bytes -= kept.size
        identity = kept.snapshot.identity
        if identity:
            sids = self._sids[identity]
            sids.discard(sid)
            if not sids:
                del self._sids[identity]
                self._unwatch(identity)

    def _unwatch(self, identity: str) -> None:
        listener = self._watching.pop(identity, None)
        if listener is not None:
            self._server.router.remove(self._server.internal_channel(identity), listener)

    def _on_internal_message(self, identity: str, payload: str) -> None:
        try:
            message: Any = encoding.loads(payload)
        except encoding.DecodeError:
            return
        if isinstance(message, dict) and message.get("type") == "disconnect":
            logger.info("remote disconnect of %s: its sessions can no longer be recovered", identity)
            self.revoke(identity)
