"""One server's numbers, in Prometheus' text format at ``Settings.metrics_path``.

A broadcast to 10,000 clients is 10,000 frames. A ``prometheus_client.Counter.inc()`` per frame
(a lock and a float each) would cost a good part of what writing the frame does, so what happens
per frame, command or subscription is counted in plain ints on :class:`Metrics`, which
:class:`_ServerCollector` reads when Prometheus scrapes: a scrape costs the same with 10 or
10,000 connections (no walk over them). What happens per generation (a handful a second) uses
prometheus_client's own histograms and counters.

The endpoint is served only with ``Settings.metrics_secret`` set, to ``Authorization: Bearer``
requests carrying it (Prometheus' ``authorization: {credentials: ...}``).

Every ``CableServer`` has its own ``CollectorRegistry``, so several servers in one process (the
tests) keep apart; nothing is registered in prometheus_client's global registry.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from .errors import CableError, ProtocolError, PubSubError, SubscriptionError
from .http_broadcast import has_bearer
from .limits import LimitKind

if TYPE_CHECKING:
    from .server import CableServer

__all__ = ["GenerationMetrics", "Metrics", "error_category"]

#: ``CONTENT_TYPE_LATEST`` of prometheus_client: the text exposition format 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def error_category(error: BaseException) -> str:
    """The ``category`` label of ``cable_errors_total`` for an error a command or hook raised."""
    if isinstance(error, ProtocolError):
        return "protocol"
    if isinstance(error, SubscriptionError):
        return "subscription"
    if isinstance(error, PubSubError):
        return "pubsub"
    if isinstance(error, CableError):
        return "refused"
    return "application"  # the channel's or connection's own code raised


class GenerationMetrics:
    """Chat generations (:mod:`cable_server.llm`): per generation, never per token."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge("cable_generations_active", "Generations streaming or waiting for a slot.", registry=registry)
        self.first_token = Histogram(
            "cable_generation_first_token_seconds",
            "Seconds from a generation's upstream request to its first token.",
            buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60),
            registry=registry,
        )
        self.duration = Histogram(
            "cable_generation_duration_seconds",
            "Seconds from send_message to a generation's last frame.",
            buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320),
            registry=registry,
        )
        self.outcomes = Counter(
            "cable_generations", "Generations ended, by outcome (done, stopped, error).", ["outcome"], registry=registry
        )
        self.errors = Counter(
            "cable_generation_errors", "Generations that ended in an error frame, by category.", ["category"], registry=registry
        )


class Metrics:
    """The counters of one server; the per-frame ones are plain ints (see the module docstring)."""

    def __init__(self, server: CableServer) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        #: Counted by the sessions as they go (plain ints: see the module docstring).
        self.frames_sent = 0
        self.frames_dropped = 0
        self.subscriptions = 0
        self.slow_disconnects = 0
        self.limit_hits: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.registry.register(_ServerCollector(server, self))
        self.generations = GenerationMetrics(self.registry)

    def limit_hit(self, kind: LimitKind) -> None:
        """Count one hit of a limit."""
        self.limit_hits[kind] += 1

    def exposition(self) -> bytes:
        """Every metric, in the text format Prometheus scrapes."""
        return generate_latest(self.registry)

    async def endpoint(self, secret: str, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI endpoint at ``metrics_path``: 401 without ``Authorization: Bearer <secret>``."""
        if has_bearer(HTTPConnection(scope), secret):
            response: Response = Response(self.exposition(), media_type=CONTENT_TYPE)
        else:
            response = PlainTextResponse("missing or wrong bearer secret", status_code=401)
        await response(scope, receive, send)


class _ServerCollector(Collector):
    """Reads the server's ints at scrape time: the same work whatever the number of connections."""

    def __init__(self, server: CableServer, metrics: Metrics) -> None:
        self._server = server
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        server, metrics = self._server, self._metrics
        yield GaugeMetricFamily("cable_connections", "Open, welcomed connections.", value=len(server.sessions))
        yield GaugeMetricFamily("cable_subscriptions", "Subscriptions of the open connections.", value=metrics.subscriptions)
        yield CounterMetricFamily(
            "cable_broadcasts_received", "Broadcasts the pub/sub delivered to this process.", value=server.router.received
        )
        yield CounterMetricFamily("cable_frames_sent", "Frames written to clients.", value=metrics.frames_sent)
        yield CounterMetricFamily(
            "cable_frames_dropped", "Frames not sent: their client was closing.", value=metrics.frames_dropped
        )
        yield CounterMetricFamily(
            "cable_slow_client_disconnects",
            "Clients disconnected as too_slow (max_send_buffer bytes unsent).",
            value=metrics.slow_disconnects,
        )
        hits = CounterMetricFamily("cable_limit_hits", "Commands or connections refused by a limit.", labels=["kind"])
        for kind in LimitKind:
            hits.add_metric([kind.value], metrics.limit_hits[kind])
        yield hits
        errors = CounterMetricFamily("cable_errors", "Commands and hooks that failed, by category.", labels=["category"])
        for category in ("protocol", "subscription", "pubsub", "refused", "application"):
            errors.add_metric([category], metrics.errors[category])
        yield errors
