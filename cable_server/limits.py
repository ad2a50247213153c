"""What one client may take from the server, sans I/O: the kinds of limit and the command rate.

Each limit is a setting (:class:`~cable_server.config.Settings`, or
:class:`~cable_server.llm.ChatSettings` for generations) with a production default. A hit is
refused the way the protocol allows, logged at warning with the connection, and counted in
``cable_limit_hits_total{kind}``.

The frame rate is a :class:`TokenBucket` per WebSocket, taken from by every frame a client sends
(pings and continuation frames too, which no command limit sees): the fast path
(:mod:`cable_server.uvicorn_ws`) closes a client that empties it with 1008.

Incomplete input (:class:`IncompleteLimit`) is what the fast path holds of a frame, or of a
message fragmented into frames, that has not arrived whole: it must complete within a deadline,
and all the sockets of one client address together may hold only so many bytes of it
(:class:`HeldInput` keeps that count, per address). Each socket's share is bounded by the frame
size limit; the sum over the thousands of sockets one address may open was not (400 sockets
each stalled in a 1 MB frame held 400 MB).

The command rate is a token bucket per connection: ``rate`` tokens a second, at most ``burst``
held, one taken per command. A command that finds the bucket empty is dropped. Dropping starts a
*flood*, which ends once the bucket is full again (the client was quiet for ``burst / rate``
seconds). A flood that drops ``max_dropped`` commands, or is still dropping after
``max_seconds``, is not a burst but a client stuck in a loop: it is disconnected.
"""

from __future__ import annotations

import enum
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "FRAME_BURST",
    "FRAME_RATE",
    "INCOMPLETE_BYTES_PER_ADDRESS",
    "INCOMPLETE_TIMEOUT",
    "Admission",
    "CommandLimiter",
    "FrameLimit",
    "HeldInput",
    "IncompleteLimit",
    "LimitKind",
    "TokenBucket",
    "address_key",
]

#: Frames a second one client may send on average, and at most at once (a message fragmented into
#: many frames). A browser sends one frame per command and no pings, and commands are limited to
#: 50 a second: a client past this is flooding.
FRAME_RATE = 100.0
FRAME_BURST = 1_000
#: Seconds a frame, or a fragmented message, may take from its first byte to its last. A
#: browser's command is a few hundred bytes in one frame; at 0.5 Mbit/s a phone still sends a
#: whole 1 MiB frame (``max_frame_bytes``) in 17 s.
INCOMPLETE_TIMEOUT = 30.0
#: Bytes of incomplete frames and messages all the sockets of one client address may hold at
#: once: sixteen ``max_frame_bytes`` frames in flight, far beyond what users sharing an address
#: send at one time.
INCOMPLETE_BYTES_PER_ADDRESS = 16 << 20


def address_key(host: str) -> str:
    """The client address a per-address limit counts: an IPv4 address as it is, an IPv6 address's
    /64 network. One subscriber (a home, a phone, a rented server) is given a /64 at least, so an
    attacker picking IPv6 addresses from its own would otherwise have 2**64 shares of every
    per-address limit; an IPv4-mapped IPv6 address is its IPv4 address. Anything else (a Unix
    socket's name) is its own key."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 4:
        return host
    assert isinstance(ip, ipaddress.IPv6Address)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((ip, 64), strict=False))


class LimitKind(enum.StrEnum):
    """The ``kind`` label of ``cable_limit_hits_total``."""

    SUBSCRIPTIONS = "subscriptions"
    IDENTIFIER_LENGTH = "identifier_length"
    STREAM_NAME_LENGTH = "stream_name_length"
    COMMAND_RATE = "command_rate"
    COMMAND_FLOOD = "command_flood"
    FRAME_RATE = "frame_rate"
    INCOMPLETE_TIMEOUT = "incomplete_timeout"
    INCOMPLETE_BYTES_PER_ADDRESS = "incomplete_bytes_per_address"
    CONNECTIONS_PER_ADDRESS = "connections_per_address"
    GENERATIONS_PER_USER = "generations_per_user"
    GENERATIONS_TOTAL = "generations_total"
    PROMPT_LENGTH = "prompt_length"
    MODEL_BUDGET = "model_budget"
    SYSTEM_PROMPT_LENGTH = "system_prompt_length"
    ROOM_VISITS = "room_visits"


class Admission(enum.Enum):
    """What to do with one command."""

    RUN = enum.auto()
    #: Drop it; the first drop of a flood (log it).
    DROP_FIRST = enum.auto()
    #: Drop it silently: the flood was logged when it began.
    DROP = enum.auto()
    #: Drop it and disconnect the client: the flood went on too long.
    DISCONNECT = enum.auto()


@dataclass(frozen=True, slots=True)
class FrameLimit:
    """The frames one client may send: ``rate`` a second on average (0: no limit), ``burst`` at
    once; ``on_flood`` runs for each client closed for sending more (to count it)."""

    rate: float = FRAME_RATE
    burst: int = FRAME_BURST
    on_flood: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class IncompleteLimit:
    """What a client may leave incomplete: a frame or fragmented message must arrive whole within
    ``timeout`` seconds of its first byte (0: no deadline), and the sockets of one address may
    hold ``per_address`` bytes of incomplete input in all (0: no budget); ``on_hit`` runs with the
    kind for each socket closed for either (to count it)."""

    timeout: float = INCOMPLETE_TIMEOUT
    per_address: int = INCOMPLETE_BYTES_PER_ADDRESS
    on_hit: Callable[[LimitKind], None] | None = None


class HeldInput:
    """Bytes of incomplete input held per client address, within ``budget`` per address (0: any).

    Each socket tells what it holds after each read that changes it (:meth:`hold`) and lets go
    of all of it when it closes; an address holding nothing has no entry, so the map is as big
    as the set of addresses holding something now.
    """

    __slots__ = ("_held", "budget")

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._held: dict[str, int] = {}

    def hold(self, address: str, before: int, after: int) -> bool:
        """One socket of ``address`` held ``before`` bytes and now holds ``after``: record it and
        say True, unless that grows the address's total past the budget: then record nothing
        and say False (the caller closes the socket, then lets go of its ``before``)."""
        total = self._held.get(address, 0) - before + after
        if after > before and 0 < self.budget < total:
            return False
        if total:
            self._held[address] = total
        else:
            self._held.pop(address, None)
        return True

    def held(self, address: str | None = None) -> int:
        """The bytes held by ``address``, or by every address when ``None``."""
        return sum(self._held.values()) if address is None else self._held.get(address, 0)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` held; full at first."""

    __slots__ = ("_stamp", "_tokens", "burst", "clock", "rate")

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def level(self) -> float:
        """The tokens held now."""
        now = self.clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        return self._tokens

    def take(self, count: float = 1.0) -> bool:
        """Take ``count`` tokens if they are held; whether they were."""
        if self.level() < count:
            return False
        self._tokens -= count
        return True


class CommandLimiter:
    """The token bucket of one connection, and the state of its flood; see the module docstring."""

    __slots__ = ("_bucket", "_dropped", "_flood_since", "_max_dropped", "_max_seconds")

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_dropped: int,
        max_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = TokenBucket(rate, burst, clock=clock)
        self._max_dropped = max_dropped
        self._max_seconds = max_seconds
        self._flood_since: float | None = None
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Commands dropped in the current flood (0 when there is none)."""
        return self._dropped

    def admit(self) -> Admission:
        """Take a token for one command, and say what to do with it."""
        bucket = self._bucket
        if self._flood_since is not None and bucket.level() >= bucket.burst:
            self._flood_since, self._dropped = None, 0  # quiet long enough: the flood is over
        if bucket.take():
            return Admission.RUN
        self._dropped += 1
        now = bucket.clock()
        if self._flood_since is None:
            self._flood_since = now
            return Admission.DROP_FIRST
        if self._dropped >= self._max_dropped or now - self._flood_since >= self._max_seconds:
            return Admission.DISCONNECT
        return Admission.DROP
