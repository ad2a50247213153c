"""The application's ``Connection``: authentication and identity, like ``ApplicationCable::Connection``.

Subclass it, list the identifying attributes in ``identified_by`` and set them in
:meth:`Connection.connect`::

    class AppConnection(Connection):
        identified_by = ("current_user",)

        async def connect(self) -> None:
            user = self.cookies.get("user")
            if not user:
                self.reject_unauthorized_connection()
            self.current_user = user

Channels read the identifiers as attributes (``self.current_user``); the client never sends
them. ``request`` is the Starlette ``WebSocket`` of the upgrade request: ``headers``,
``query_params``, ``client``, ``url``. Read cookies from :attr:`Connection.cookies`, parsed as Rack
parses them (``%``-decoded, the first of a name wins), not from ``request.cookies`` (Starlette's
parsing, which differs; see :mod:`cable_server.cookies`). For the signed and encrypted cookies and
the session of a Rails app, see :mod:`cable_server.rails`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from .cookies import request_cookies
from .errors import UnauthorizedError
from .naming import connection_identifier
from .protocol import DisconnectReason

if TYPE_CHECKING:
    from starlette.websockets import WebSocket

    from .server import CableServer
    from .session import Session

__all__ = ["Connection", "ConnectionStatistics"]

#: What Rails' ``ActionDispatch::RequestId`` removes from an ``X-Request-Id`` (Ruby's ``\w`` is ASCII).
_NOT_IN_REQUEST_ID = re.compile(r"[^\w\-@]", re.ASCII)


@dataclass(frozen=True, slots=True)
class ConnectionStatistics:
    """One open connection, as Rails' ``connection.statistics`` describes it (what
    ``ActionCable.server.open_connections_statistics`` lists): for an admin page or a debug
    endpoint, never for the client."""

    #: The connection identifier (:attr:`Connection.connection_identifier`); ``""`` when anonymous.
    identifier: str
    #: When the upgrade was accepted (UTC), before ``connect`` ran, as Rails times it.
    started_at: datetime
    #: The identifier string of every subscription, exactly as the client sent it, in subscription order.
    subscriptions: tuple[str, ...]
    #: The upgrade request's ``X-Request-Id`` (a proxy's, say), cleaned as Rails cleans it;
    #: ``None`` without one (Rails would have made one up).
    request_id: str | None
    #: The ``connection_id`` of this connection's log records (:attr:`Connection.log_id`).
    connection_id: str


def _request_id(headers: Mapping[str, str]) -> str | None:
    """``X-Request-Id`` as ``ActionDispatch::RequestId`` keeps it: ``[A-Za-z0-9_@-]``, 255 at most."""
    value = headers.get("x-request-id", "").strip()
    return _NOT_IN_REQUEST_ID.sub("", value)[:255] if value else None


class Connection:
    """One client connection, as the application sees it."""

    #: Names of the attributes that identify this connection (Rails' ``identified_by``).
    identified_by: ClassVar[tuple[str, ...]] = ()
    #: When the credentials ``connect`` checked expire (``time.time()`` seconds, a token's
    #: ``exp``); ``None``: they do not. The connection stays open past it (as in Rails), but
    #: AnyCable session recovery (``?sid=``), which skips ``connect``, stops then.
    expires_at: float | None = None

    def __init__(self, session: Session) -> None:
        self._session = session
        for name in self.identified_by:  # like Rails' attr_accessor: nil until connect() sets it
            setattr(self, name, None)

    # --- hooks ----------------------------------------------------------------------------

    async def connect(self) -> None:
        """Authenticate the upgrade request; call :meth:`reject_unauthorized_connection` to refuse.

        Runs before the welcome; commands the client sends meanwhile wait and run after it.
        """

    async def disconnect(self) -> None:
        """Called once the socket is closed and every subscription has been unsubscribed."""

    # --- API ------------------------------------------------------------------------------

    @property
    def request(self) -> WebSocket:
        """The upgrade request: headers, cookies, query params, client address, URL."""
        return self._session.websocket

    @cached_property
    def cookies(self) -> Mapping[str, str | None]:
        """The request's cookies as Rails' ``cookies[...]`` reads them (Rack's parsing)."""
        return request_cookies(self.request)

    @property
    def server(self) -> CableServer:
        """The server this connection belongs to."""
        return self._session.server

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols the client offered, in its order."""
        return list(self._session.websocket.scope.get("subprotocols", []))

    @property
    def sid(self) -> str:
        """This socket's session id, unique in the process: with AnyCable's extended protocol, the
        ``sid`` of its welcome, which restores the session: a bearer secret, never logged."""
        return self._session.sid

    @property
    def log_id(self) -> str:
        """This socket's id in log records (``connection_id``) and anywhere it may be shown: derived
        from :attr:`sid`, from which it cannot be turned back."""
        return self._session.log_id

    def reject_unauthorized_connection(self) -> NoReturn:
        """Refuse the connection: the client gets the ``unauthorized`` disconnect frame."""
        raise UnauthorizedError("connection rejected")

    @property
    def identifiers(self) -> dict[str, Any]:
        """The identifying attributes and their values (unset ones are ``None``)."""
        return {name: getattr(self, name) for name in self.identified_by}

    @property
    def connection_identifier(self) -> str:
        """Rails' connection identifier: the identifying values, as params, sorted, ``:``-joined."""
        return connection_identifier(self.identifiers.values())

    @property
    def statistics(self) -> ConnectionStatistics:
        """This connection as Rails' ``connection.statistics`` describes it, now."""
        session = self._session
        return ConnectionStatistics(
            identifier=self.connection_identifier,
            started_at=datetime.fromtimestamp(session.started_at, UTC),
            subscriptions=tuple(session.subscriptions.identifiers),
            request_id=_request_id(self.request.headers),
            connection_id=self.log_id,
        )

    def close(self, *, reason: DisconnectReason | None = None, reconnect: bool = True) -> None:
        """Send ``{"type":"disconnect",...}`` and close the socket with 1000, as Rails' ``close``."""
        self._session.disconnect(reason, reconnect=reconnect)
