"""Logging: one JSON object per line (``--log-format json``), with the connection a record is about.

A record about a connection carries ``connection_id`` (a hash of the session id, never the
``sid`` itself, which restores a session),
``peer`` (client address and port) and ``identifiers`` (the ``identified_by`` values), so a log
pipeline can follow one client. They come from two places:

* ``extra=connection_fields(session)``, where code logs about a connection that may not be the
  one it runs for (a broadcast from Alice's action disconnecting Bob as ``too_slow``);
* otherwise the connection whose task is logging: each session binds itself to the context of
  its own ASGI task (and so of every task it starts: actions' tasks, generations), and
  :class:`ConnectionFilter` adds its fields to records that have none.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
import sys
import weakref
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "ConnectionFilter",
    "CredentialFilter",
    "JsonFormatter",
    "bind_connection",
    "clip",
    "configure",
    "connection_fields",
    "filter_credentials",
    "redact_query",
]

# A weak reference: contexts outlive their tasks (an upstream HTTP connection opened by a
# generation keeps the context it was opened in for as long as it stays pooled), and must not
# keep a closed connection's session alive (found by the soak test).
_CURRENT: contextvars.ContextVar[weakref.ref[Session] | None] = contextvars.ContextVar("cable_server_connection", default=None)

#: Attributes every LogRecord has: anything else on a record came from ``extra``.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}

TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Query parameters whose values never reach a log line: AnyCable's ``sid`` (a bearer secret),
#: and any name containing one of Rails' default ``filter_parameters`` (``token``, ``secret``...).
_SECRET_PARAM: Final = re.compile(r"(?i)^(sid|.*(passw|secret|token|_key|crypt|salt|certificate|otp|ssn|jwt|auth).*)$")
_QUERY_PAIR: Final = re.compile(r"([?&])([^=&#\s]*)=([^&#\s]*)")
FILTERED: Final = "[FILTERED]"
#: Headers whose values are credentials (a session cookie, a guest cookie, a token), and how
#: ``websockets`` logs each header of a handshake at DEBUG, request (``<``) and response (``>``);
#: uvicorn gives it its ``uvicorn.error`` logger.
_SECRET_HEADERS: Final = frozenset({"cookie", "set-cookie", "authorization", "proxy-authorization"})
_HEADER_LINES: Final = frozenset({"< %s: %s", "> %s: %s"})


def bind_connection(session: Session) -> None:
    """Make ``session`` the connection of every record logged from the current task (and the
    tasks it starts from now on)."""
    _CURRENT.set(weakref.ref(session))


def connection_fields(session: Session) -> dict[str, Any]:
    """``connection_id``, ``peer`` and ``identifiers`` of ``session``, for ``extra=``."""
    connection = session.connection
    identifiers = {name: _loggable(getattr(connection, name, None)) for name in connection.identified_by}
    return {"connection_id": session.log_id, "peer": session.peer, "identifiers": identifiers}


def _loggable(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float) else clip(value)


class ConnectionFilter(logging.Filter):
    """Adds the fields of the current task's connection to records that name none."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "connection_id" not in record.__dict__:
            reference = _CURRENT.get()
            session = reference() if reference is not None else None
            if session is not None:
                record.__dict__.update(connection_fields(session))
        return True


_CONTROL: Final = {code: f"\\x{code:02x}" for code in (*range(32), 127)}
CLIP: Final = 200


def clip(value: object, limit: int = CLIP) -> str:
    """``value`` as a client may have chosen it, made safe for one log line: control characters
    escaped (a newline would forge a line, a NUL make the file binary) and at most ``limit``
    characters kept (a client's megabyte identifier is not written out in full)."""
    text = str(value)
    if len(text) > limit:
        text = f"{text[:limit]}...(+{len(text) - limit} characters)"
    return text.translate(_CONTROL)


def redact_query(text: str) -> str:
    """``text`` with the values of secret query parameters (``?token=...``, ``&sid=...``) replaced by
    ``[FILTERED]``, as Rails filters its request log."""
    if "?" not in text:
        return text
    return _QUERY_PAIR.sub(lambda m: f"{m[1]}{m[2]}={FILTERED}" if _SECRET_PARAM.match(unquote_plus(m[2])) else m[0], text)


class CredentialFilter(logging.Filter):
    """Redacts secret query parameters from the arguments of a record (uvicorn logs each request's
    path with its query string: ``"GET /cable?token=<JWT> HTTP/1.1"``, ``"WebSocket /cable?sid=..."``)
    and the values of credential headers from the handshake's header lines (``websockets`` logs
    ``"> set-cookie: ..."`` at DEBUG), and clips them to 1,000 characters."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple):
            if record.msg in _HEADER_LINES and len(args) == 2 and str(args[0]).lower() in _SECRET_HEADERS:
                args = (args[0], FILTERED)
            record.args = tuple(clip(redact_query(arg), 1000) if isinstance(arg, str) else arg for arg in args)
        return True


def filter_credentials() -> None:
    """Install :class:`CredentialFilter` on uvicorn's loggers (once; they log the request targets)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, CredentialFilter) for existing in logger.filters):
            logger.addFilter(CredentialFilter())


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra, "exception"?}`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key, value in record.__dict__.items() if key not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str, log_format: str = "text") -> None:
    """Log to stderr at ``level``, as text lines or JSON lines (``log_format``: ``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ConnectionFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
