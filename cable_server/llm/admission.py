"""What a request must pass before it becomes a generation, and how each refusal is logged and
counted: its fields' bounds first, then (once its room and its requester are free to start an
answer) the model budget over time (:mod:`cable_server.llm.budget`). And the visits of anonymous
rooms over time, which the same buckets bound per connection and per address: a sweep of room ids
is slow.

Every refusal is a :class:`~cable_server.llm.errors.GenerationError` for the sender alone,
counted in ``cable_limit_hits_total{kind}`` and logged at warning; a budget refusal is logged
once a minute per requester or address, since a client over its budget keeps asking.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import logs
from ..limits import LimitKind
from ..metrics import Metrics
from .budget import Allowance, Budget, estimate_tokens
from .errors import ErrorCategory, GenerationError
from .settings import ChatSettings

__all__ = ["Gate"]

logger = logging.getLogger("cable_server.llm")


class Gate:
    """The checks of one chat service (see the module docstring)."""

    def __init__(self, settings: ChatSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        #: The model budget over time.
        self.budget = Budget.of(settings)
        #: Visits of anonymous rooms over time, per connection and per address.
        self.visits = Budget(
            per_requester=Allowance(settings.room_visits_per_minute_per_connection, 0),
            per_address=Allowance(settings.room_visits_per_minute_per_address, 0),
            total=Allowance(0, 0),
        )

    def system_prompt(self, room: str, user_content: Any, system_content: Any) -> str | None:
        """Refuse a question or a client system prompt out of bounds; the system prompt to send."""
        settings = self.settings
        if not isinstance(user_content, str) or not user_content.strip():
            raise GenerationError(ErrorCategory.INVALID_REQUEST, "user_content must be a non-empty string.")
        self._refuse_longer(room, "user_content", user_content, settings.max_prompt_chars, LimitKind.PROMPT_LENGTH)
        if settings.allow_client_system_prompt and isinstance(system_content, str) and system_content.strip():
            limit = settings.max_system_prompt_chars
            self._refuse_longer(room, "system_content", system_content, limit, LimitKind.SYSTEM_PROMPT_LENGTH)
            return system_content
        return settings.system_prompt

    def charge(self, room: str, user_content: str, system: str | None, *, requester: str | None, address: str | None) -> None:
        """Take the request from the model budget, or refuse it (``rate_limited``, ``retry_after``)."""
        tokens = estimate_tokens(user_content, system) + (self.settings.max_tokens or 0)
        refusal = self.budget.charge(tokens, requester=requester, address=address)
        if refusal is None:
            return
        who = {"requester": requester, "address": address}.get(refusal.bound) or ""
        detail = f"{refusal.measure} a minute per {refusal.bound} {logs.clip(who)}".rstrip()
        self.refused(LimitKind.MODEL_BUDGET, room, f"{detail}; retry after {refusal.retry_after} s", log=refusal.first)
        raise GenerationError(
            ErrorCategory.RATE_LIMITED,
            f"Too many questions for now; try again in {refusal.retry_after} s.",
            retry_after=refusal.retry_after,
        )

    def visit(self, room: str, *, connection: str, address: str | None, count: int = 1) -> None:
        """Count ``count`` visits of ``room`` (joining an anonymous one, ``history``, ``resume``, a
        replay), or refuse them (``rate_limited``, ``retry_after``)."""
        refusal = self.visits.charge(0, requester=connection, address=address, requests=count)
        if refusal is None:
            return
        bound, who = ("connection", connection) if refusal.bound == "requester" else (refusal.bound, address or "")
        detail = f"rooms a minute per {bound} {logs.clip(who)}; retry after {refusal.retry_after} s"
        self.refused(LimitKind.ROOM_VISITS, room, detail, log=refusal.first, what="visit")
        raise GenerationError(
            ErrorCategory.RATE_LIMITED,
            f"Too many rooms visited for now; try again in {refusal.retry_after} s.",
            retry_after=refusal.retry_after,
        )

    def refused(self, kind: LimitKind, room: str, detail: str, *, log: bool = True, what: str = "generation") -> None:
        """Count a refusal of ``what`` in ``room`` (and log it, unless told not to)."""
        self.metrics.limit_hit(kind)
        if log:
            room = logs.clip(room)  # a client named it
            logger.warning("%s refused in %s (%s): %s", what, room, kind.value, detail, extra={"limit": kind.value, "room": room})

    def _refuse_longer(self, room: str, field: str, text: str, limit: int, kind: LimitKind) -> None:
        if len(text) > limit:
            self.refused(kind, room, f"{field} of {len(text)} characters")
            raise GenerationError(ErrorCategory.INVALID_REQUEST, f"{field} is longer than {limit} characters.")
