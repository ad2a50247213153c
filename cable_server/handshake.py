"""Who may open a cable: Rails' request-forgery (Origin) check, as a pure function."""

from __future__ import annotations

from collections.abc import Mapping

from .config import Settings

__all__ = ["origin_allowed"]


def origin_allowed(settings: Settings, headers: Mapping[str, str], scheme: str) -> bool:
    """Rails' ``allow_request_origin?``.

    In order: the check is disabled; the origin is ``http(s)://<Host header>`` (same origin,
    when allowed); the origin matches an allowed string exactly or an allowed pattern fully.
    A request without an ``Origin`` header is refused unless the check is disabled.
    """
    if settings.disable_origin_check:
        return True
    origin = headers.get("origin")
    if origin is None:
        return False
    if settings.allow_same_origin_as_host:
        proto = "https" if scheme in ("wss", "https") else "http"
        host = headers.get("host")
        if host is not None and origin == f"{proto}://{host}":
            return True
    return any(rule == origin if isinstance(rule, str) else rule.fullmatch(origin) for rule in settings.allowed_origins)
