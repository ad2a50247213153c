"""The model budget over time, sans I/O: requests and estimated tokens a minute, per requester, per
address and in all.

A public chat endpoint is a way to spend someone's model budget: ten anonymous sockets looping
``send_message`` with 32,000-character questions and ``stop`` sent 1,276 requests (some 10 M
input tokens) upstream in 15 s, bounded only in concurrency. Here every request is charged, before
anything goes upstream, to each bound that applies: its requester (the identified user, or the
one anonymous connection), its client address, and the whole process. Each bound is a pair of
token buckets holding a minute's allowance and refilled at a sixtieth of it a second, so a quiet
client may ask a burst and a busy one gets its allowance spread over time. A request that one
bound cannot take is refused whole (nothing is charged anywhere) with the seconds until it
would pass.

The process' bound is shared fairly: its last quarter (:data:`RESERVE`) is kept for addresses that
have spent less than half their own allowance, so that ten addresses asking at their full rate
cannot spend it all and leave every newcomer refused.

Tokens are estimated, as a rate limit must decide before the answer exists: four characters a
token for what the client sent (question and system prompt), plus ``max_tokens`` for the answer
(its most). The room's history sent with the question is bounded by ``history_tokens`` per
request and not counted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..limits import TokenBucket
from .settings import ChatSettings

__all__ = ["Allowance", "Budget", "Refusal", "estimate_tokens"]

#: Characters a token, for estimates (English prose averages about four).
CHARS_PER_TOKEN = 4
#: The share of the process' bound that an address which has spent half its own allowance
#: (in the last minute, as its bucket tells) may not take: kept for the others.
RESERVE = 0.25


def estimate_tokens(*texts: str | None) -> int:
    """The tokens ``texts`` make, estimated at :data:`CHARS_PER_TOKEN` characters each."""
    return sum(math.ceil(len(text) / CHARS_PER_TOKEN) for text in texts if text)


@dataclass(frozen=True, slots=True)
class Allowance:
    """What one bound allows a minute: requests and tokens; 0 leaves that measure unbounded."""

    requests: int
    tokens: int


#: An allowance that bounds nothing.
UNBOUNDED = Allowance(0, 0)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the budget did not take: the bound that refused it, and when it would pass."""

    #: ``"requester"``, ``"address"`` or ``"total"``.
    bound: str
    #: ``"requests"`` or ``"tokens"``.
    measure: str
    #: Seconds until the request would be taken (rounded up to a whole second).
    retry_after: int
    #: The first refusal by this bound (of this requester or address) in a minute: the one to log.
    first: bool


class _Meter:
    """The requests and tokens buckets of one key; ``None`` where the allowance is unbounded."""

    __slots__ = ("requests", "tokens")

    def __init__(self, allowance: Allowance, clock: Callable[[], float]) -> None:
        self.requests = TokenBucket(allowance.requests / 60, allowance.requests, clock=clock) if allowance.requests else None
        self.tokens = TokenBucket(allowance.tokens / 60, allowance.tokens, clock=clock) if allowance.tokens else None

    def buckets(self, tokens: int, requests: int = 1) -> Iterator[tuple[str, TokenBucket, float]]:
        """Each bucket with what ``requests`` requests of ``tokens`` take from it (more than a
        whole allowance takes all of it: it passes when the bucket is full)."""
        if self.requests is not None:
            yield "requests", self.requests, float(min(requests, self.requests.burst))
        if self.tokens is not None:
            yield "tokens", self.tokens, float(min(tokens, self.tokens.burst))

    def full(self) -> bool:
        return all(bucket.level() >= bucket.burst for _, bucket, _ in self.buckets(0))

    def spent_half(self) -> bool:
        """Whether either bucket holds less than half its allowance: a heavy user for now."""
        return any(bucket.level() < bucket.burst / 2 for _, bucket, _ in self.buckets(0))


class Budget:
    """Requests and estimated tokens a minute, per requester, per address and in all (see the
    module docstring). ``max_keys``: requesters and addresses remembered at most (beyond, those
    whose buckets are full again are forgotten first, then the oldest)."""

    def __init__(
        self,
        *,
        per_requester: Allowance,
        per_address: Allowance,
        total: Allowance,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._allowances = {"requester": per_requester, "address": per_address}
        self._clock = clock
        self._max_keys = max_keys
        self._total = _Meter(total, clock)
        self._meters: dict[tuple[str, str], _Meter] = {}
        self._refused: dict[tuple[str, str], float] = {}  # when each was last told it is refused, for the log

    @classmethod
    def of(cls, settings: ChatSettings) -> Budget:
        """The budget ``settings`` describe."""
        return cls(
            per_requester=Allowance(settings.requests_per_minute_per_user, settings.tokens_per_minute_per_user),
            per_address=Allowance(settings.requests_per_minute_per_address, settings.tokens_per_minute_per_address),
            total=Allowance(settings.requests_per_minute, settings.tokens_per_minute),
        )

    def charge(self, tokens: int, *, requester: str | None, address: str | None, requests: int = 1) -> Refusal | None:
        """Charge ``requests`` requests (one, usually) of ``tokens`` in all to every bound they fall
        under, or to none: ``None`` when taken, else the :class:`Refusal` that waits longest."""
        meters = [(("total", ""), self._total)]
        heavy = False  # the address has spent half its own: the process' reserve is not for it
        for bound, key in (("requester", requester), ("address", address)):
            if key is not None and self._allowances[bound] != UNBOUNDED:  # nothing to remember
                meter = self._meter(bound, key)
                meters.append(((bound, key), meter))
                heavy = bound == "address" and meter.spent_half()
        takes = [
            (name, measure, bucket, needed)
            for name, meter in meters
            for measure, bucket, needed in meter.buckets(tokens, requests)
        ]
        waits = [
            (max(1, math.ceil(short / bucket.rate)), measure, name)
            for name, measure, bucket, needed in takes
            if (short := self._kept(name, bucket, needed, heavy) - bucket.level()) > 0
        ]
        if not waits:
            for _, _, bucket, needed in takes:
                bucket.take(needed)
            return None
        retry_after, measure, name = max(waits)
        now = self._clock()
        first = now - self._refused.get(name, -math.inf) >= 60
        if first:
            self._refused.pop(name, None)
            self._refused[name] = now  # in time order: the oldest go first
            while len(self._refused) > self._max_keys:
                del self._refused[next(iter(self._refused))]
        return Refusal(name[0], measure, retry_after, first)

    @staticmethod
    def _kept(name: tuple[str, str], bucket: TokenBucket, needed: float, heavy: bool) -> float:
        """What ``bucket`` must hold to take ``needed``: more, by the reserve, when it is the
        process' and the address a heavy one (never more than the whole bucket)."""
        if heavy and name[0] == "total":
            return min(needed + bucket.burst * RESERVE, bucket.burst)
        return needed

    def __len__(self) -> int:
        """Requesters and addresses remembered."""
        return len(self._meters)

    def _meter(self, bound: str, key: str) -> _Meter:
        meter = self._meters.get((bound, key))
        if meter is None:
            if len(self._meters) >= self._max_keys:
                self._forget()
            meter = self._meters[(bound, key)] = _Meter(self._allowances[bound], self._clock)
        return meter

    def _forget(self) -> None:
        """Make room: every key whose buckets are full again (as good as new), else the oldest."""
        for key in [key for key, meter in self._meters.items() if meter.full()]:
            del self._meters[key]
        while len(self._meters) >= self._max_keys:
            del self._meters[next(iter(self._meters))]
