"""AnyCable session recovery: a client that reconnects with ``?sid=<its last sid>`` gets its
connection identity and subscriptions back without ``connect`` running again.

Snapshots are kept in process for ``ttl`` seconds after the socket closed; a client that lands
on another process simply gets a fresh session (and its client resubscribes with history).
The sid is a 96-bit random bearer secret, as in AnyCable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SessionCache", "Snapshot"]


@dataclass(frozen=True, slots=True)
class Snapshot:
    #: ``identified_by`` name -> value of the closed connection.
    identifiers: dict[str, Any]
    #: (identifier string, decoded params) of each live subscription, in subscription order.
    subscriptions: list[tuple[str, dict[str, Any]]]
    expires: float = field(default=0.0, compare=False)


class SessionCache:
    """Snapshots of closed extended-protocol connections, by sid, for ``ttl`` seconds."""

    def __init__(self, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self._snapshots: dict[str, Snapshot] = {}

    def save(self, sid: str, identifiers: dict[str, Any], subscriptions: list[tuple[str, dict[str, Any]]]) -> None:
        """Keep what recovering ``sid`` needs: the identifiers and the subscriptions."""
        self._snapshots[sid] = Snapshot(identifiers, subscriptions, time.monotonic() + self.ttl)

    def take(self, sid: str | None) -> Snapshot | None:
        """The snapshot of ``sid``, once: a sid restores one connection."""
        self.expire()
        return self._snapshots.pop(sid, None) if sid else None

    def expire(self) -> None:
        """Forget snapshots older than ``ttl``."""
        now = time.monotonic()
        for sid in [sid for sid, snapshot in self._snapshots.items() if snapshot.expires < now]:
            del self._snapshots[sid]
