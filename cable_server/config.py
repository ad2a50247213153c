"""Settings, with production defaults; every timing is a setting so tests pass small values."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .limits import FRAME_BURST, FRAME_RATE, INCOMPLETE_BYTES_PER_ADDRESS, INCOMPLETE_TIMEOUT

__all__ = ["Settings", "invalid_numbers", "parse_origins"]

OriginRule = str | re.Pattern[str]


@dataclass(frozen=True, slots=True)
class Settings:
    #: Where the cable is mounted; ``/cable/anything`` is served too (a Rack mount matches by prefix).
    path: str = "/cable"
    #: Extra allowed ``Origin`` values: exact strings or compiled patterns (full match).
    allowed_origins: tuple[OriginRule, ...] = ()
    #: Allow an ``Origin`` equal to ``<scheme>://<Host header>`` (Rails' default).
    allow_same_origin_as_host: bool = True
    #: Skip the origin check entirely (Rails' ``disable_request_forgery_protection``).
    disable_origin_check: bool = False
    #: Seconds between heartbeat pings (Rails: 3; clients call a connection stale after 6).
    ping_interval: float = 3.0
    #: Largest frame a client may send; a bigger one closes its connection with 1009 (Rails'
    #: websocket-driver allows 64 MiB; an ActionCable command is rarely over a few KiB).
    max_frame_bytes: int = 1 << 20
    #: Bytes of frames waiting for one client (it stopped reading) before it is disconnected
    #: as ``too_slow`` (AnyCable's reason; the client reconnects and can resume).
    max_send_buffer: int = 1 << 20
    #: Seconds unacknowledged data may stay in flight before the kernel drops a connection (Linux
    #: ``TCP_USER_TIMEOUT``). With a ping every ``ping_interval`` there always is data in flight,
    #: so a client that vanished without closing is gone after this long, without a WebSocket
    #: ping/pong per connection. ``None``: the system default (about 15 minutes).
    dead_peer_timeout: float | None = 30.0
    #: A request head (request line and headers, the WebSocket upgrade's included) over this many
    #: bytes gets HTTP 431 and a close; one not complete within ``request_head_timeout`` seconds a
    #: close. Whatever HTTP parser uvicorn uses (httptools alone has no limit).
    max_request_head_bytes: int = 64 * 1024
    request_head_timeout: float = 10.0
    #: Seconds to wait for queued frames and the close handshake when closing a connection.
    close_timeout: float = 5.0
    #: Seconds graceful shutdown waits for clients to close after ``server_restart``.
    shutdown_timeout: float = 2.0
    #: Rails-exact answers where this server deliberately differs (see the README): silence
    #: for an unknown channel and for a ``subscribed`` that raised, instead of a rejection.
    rails_exact: bool = False
    #: Negotiate permessage-deflate (Rails never does; it costs memory per connection).
    per_message_deflate: bool = False
    #: AnyCable session recovery (``?sid=``): seconds a closed session may be recovered, and
    #: seconds from the ``connect`` that authenticated it after which it no longer may (recovery
    #: skips ``connect``, so it must not prolong an identity; a recovered session keeps the clock).
    recovery_ttl: float = 300.0
    recovery_max_age: float = 900.0
    #: Memory the kept sessions may hold in all (roughly); past it the oldest are forgotten.
    recovery_max_bytes: int = 64 << 20
    #: Set to enable ``POST <broadcast_path>`` with ``Authorization: Bearer <secret>``.
    broadcast_secret: str | None = None
    broadcast_path: str = "/_broadcast"

    # --- limits: each hit is refused, logged (warning) and counted (``cable_limit_hits_total``) ---
    #: Subscriptions one connection may hold; one more gets ``reject_subscription``.
    max_subscriptions: int = 100
    #: Characters of a subscription identifier (its channel and params); a longer one gets
    #: ``reject_subscription``. Rails has no limit; an identifier is rarely over a hundred.
    max_identifier_length: int = 1024
    #: Characters of a stream name a channel streams from; a longer one fails the ``stream_from``
    #: (in ``subscribed``: the subscription is rejected).
    max_stream_name_length: int = 1024
    #: WebSocket frames per second one connection may send on average (a token bucket holding
    #: ``frame_burst``), every frame counted where it is parsed: pings, pongs and continuation
    #: frames too. A client past it is closed with 1008. On the fast path only (uvicorn's own
    #: protocols, the fallback of ``compat.py``, parse frames where this server cannot count them).
    frame_rate: float = FRAME_RATE
    frame_burst: int = FRAME_BURST
    #: Seconds a frame, or a message fragmented into frames, may take from its first byte to its
    #: last; bytes of such incomplete input all the sockets of one client address (as
    #: ``max_connections_per_address`` counts them) may hold at once. Past either, the socket is
    #: closed with 1008 (the read that would go past the budget closes its own socket). 0: none.
    #: Keep the budget well above ``max_frame_bytes``, which one socket may hold. On the fast path
    #: only, as ``frame_rate``.
    incomplete_timeout: float = INCOMPLETE_TIMEOUT
    max_incomplete_bytes_per_address: int = INCOMPLETE_BYTES_PER_ADDRESS
    #: Commands per second one connection may send on average (a token bucket refilled at this
    #: rate, holding ``command_burst``); a command beyond it is dropped unexecuted. 0: no limit.
    command_rate: float = 50.0
    command_burst: int = 100
    #: A flood (commands dropped until the bucket is full again) that drops this many commands,
    #: or lasts this many seconds, disconnects the client (``invalid_request``, reconnect true).
    max_dropped_commands: int = 100
    max_flood_seconds: float = 5.0
    #: Open connections from one client address (behind a proxy: the forwarded address, see
    #: uvicorn's ``--forwarded-allow-ips``); one more is refused with HTTP 429. A guard against
    #: one address taking the whole process (half the usual 20,000 descriptors), not a fine
    #: one: many users share an address (NAT, offices), and load generators open 4,000 sockets
    #: per loopback address. Lower it when clients come straight from the Internet.
    max_connections_per_address: int = 10_000

    # --- observability: ``None`` turns an endpoint off ---
    #: Liveness: 200 ``{"status":"ok"}`` while the process serves.
    health_path: str | None = "/health"
    #: Readiness: 200 when the pub/sub answers and the server is not draining, else 503.
    ready_path: str | None = "/health/ready"
    #: Prometheus metrics of this server (text exposition format), served only to requests with
    #: ``Authorization: Bearer <metrics_secret>``; with no secret set, not served at all (a scrape
    #: tells connection counts and error rates, which are not for the public).
    metrics_path: str | None = "/metrics"
    metrics_secret: str | None = None

    def __post_init__(self) -> None:
        if invalid := invalid_numbers(self):
            raise ValueError(f"{invalid[0]} must be a number, 0 or more, got {getattr(self, invalid[0])!r}")


def invalid_numbers(settings: object) -> list[str]:
    """The number fields of a settings dataclass holding a negative value, or one that is not
    finite: every count, size, rate and duration of ours is a number 0 or more (a negative limit
    read as "none", or as "nothing"; ``nan``, which Python's ``float()`` reads, passes every
    comparison and broke each connection's timer when it was a timeout)."""
    return [
        spec.name
        for spec in dataclasses.fields(settings)  # type: ignore[arg-type]
        if isinstance(value := getattr(settings, spec.name), int | float)
        and not isinstance(value, bool)
        and not 0 <= value < math.inf
    ]


def parse_origins(values: Sequence[str]) -> tuple[OriginRule, ...]:
    """Turn command-line origins into rules: ``/regex/`` becomes a pattern, others stay exact."""
    rules: list[OriginRule] = []
    for value in values:
        value = value.strip()
        if len(value) > 1 and value.startswith("/") and value.endswith("/"):
            rules.append(re.compile(value[1:-1]))
        elif value:
            rules.append(value)
    return tuple(rules)
