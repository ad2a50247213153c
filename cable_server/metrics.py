"""One server's numbers, in Prometheus' text format at ``Settings.metrics_path``.

A broadcast to 10,000 clients is 10,000 frames. A ``prometheus_client.Counter.inc()`` per frame
(a lock and a float each) would cost a good part of what writing the frame does, so what happens
per frame or per command is counted in plain ints, on the session while it lives and here once
it ended, and :class:`_ServerCollector` adds them up when Prometheus scrapes. What happens per
generation (a handful a second) uses prometheus_client's own histograms and counters.

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
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from .errors import CableError, ProtocolError, PubSubError, SubscriptionError
from .limits import LimitKind

if TYPE_CHECKING:
    from .server import CableServer
    from .session import Session

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
        #: Frames written by sessions that have ended (live ones count their own).
        self.frames_sent = 0
        self.frames_dropped = 0
        self.slow_disconnects = 0
        self.limit_hits: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.registry.register(_ServerCollector(server, self))
        self.generations = GenerationMetrics(self.registry)

    def limit_hit(self, kind: LimitKind) -> None:
        """Count one hit of a limit."""
        self.limit_hits[kind] += 1

    def session_ended(self, session: Session) -> None:
        """Keep the counts of a session that is going away."""
        self.frames_sent += session.frames_sent
        self.frames_dropped += session.frames_dropped
        session.frames_sent = session.frames_dropped = 0

    def exposition(self) -> bytes:
        """Every metric, in the text format Prometheus scrapes."""
        return generate_latest(self.registry)

    async def endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI endpoint at ``metrics_path``."""
        await Response(self.exposition(), media_type=CONTENT_TYPE)(scope, receive, send)


class _ServerCollector(Collector):
    """Reads the server's ints at scrape time: O(connections) per scrape, nothing per frame."""

    def __init__(self, server: CableServer, metrics: Metrics) -> None:
        self._server = server
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        server, metrics = self._server, self._metrics
        sessions = tuple(server.sessions)
        yield GaugeMetricFamily("cable_connections", "Open, welcomed connections.", value=len(sessions))
        yield GaugeMetricFamily(
            "cable_subscriptions", "Subscriptions of the open connections.", value=sum(len(s.subscriptions) for s in sessions)
        )
        yield CounterMetricFamily(
            "cable_broadcasts_received", "Broadcasts the pub/sub delivered to this process.", value=server.router.received
        )
        sent = metrics.frames_sent + sum(s.frames_sent for s in sessions)
        yield CounterMetricFamily("cable_frames_sent", "Frames written to clients.", value=sent)
        dropped = metrics.frames_dropped + sum(s.frames_dropped for s in sessions)
        yield CounterMetricFamily("cable_frames_dropped", "Frames not sent: their client was closing.", value=dropped)
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
