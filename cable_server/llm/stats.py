"""What one generation did, for its log line and the metrics: timings, chunks, how it ended."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from .. import logs
from ..metrics import GenerationMetrics

__all__ = ["GenerationStats"]

logger = logging.getLogger("cable_server.llm")


@dataclass
class GenerationStats:
    """Filled in while a generation runs; :meth:`report` once it ended."""

    #: When send_message came in; ``requested``: when the upstream request went out (after the queue).
    received: float = field(default_factory=time.monotonic)
    requested: float = field(default_factory=time.monotonic)
    first_token: float | None = None
    chunks: int = 0
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    def report(self, message_id: str, room: str, model: str, outcome: str, metrics: GenerationMetrics) -> None:
        """Observe the generation in ``metrics`` and log its one line (``outcome``: done, stopped
        reasons, ``error:<category>``)."""
        now = time.monotonic()
        metrics.outcomes.labels("done" if outcome == "done" else "error" if outcome.startswith("error") else "stopped").inc()
        metrics.duration.observe(now - self.received)
        if self.first_token is not None:
            metrics.first_token.observe(self.first_token - self.requested)
        ttft = f"{(self.first_token - self.requested) * 1000:.0f}ms" if self.first_token else "-"
        streaming = now - self.first_token if self.first_token else 0.0
        rate = f"{self.chunks / streaming:.1f}" if streaming > 0 else "-"
        logger.info(
            "generation %s room=%s model=%s outcome=%s ttft=%s chunks=%d tokens/s=%s finish=%s usage=%s",
            message_id,
            logs.clip(room),
            model,
            outcome,
            ttft,
            self.chunks,
            rate,
            self.finish_reason,
            self.usage,
        )
