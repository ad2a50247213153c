"""Beside a Rails app: identify cable users by the cookies and session Rails already set.

Rails keeps HTTP and login; ``/cable`` goes to this server on the same site, so the browser sends
it Rails' cookies. With the app's ``secret_key_base`` (``bin/rails credentials:show`` or
``SECRET_KEY_BASE``), a :class:`RailsConnection` reads them as ``ApplicationCable::Connection``
does::

    from cable_server.rails import RailsConnection, RailsCookies

    class AppConnection(RailsConnection):
        identified_by = ("current_user",)
        rails_cookies = RailsCookies.from_secret(os.environ["SECRET_KEY_BASE"], session_key="_myapp_session")

        async def connect(self) -> None:
            user_id = self.cookies.encrypted["user_id"]    # cookies.encrypted[:user_id]
            if user_id is None:
                self.reject_unauthorized_connection()
            self.current_user = await find_user(user_id)

Devise keeps the user in the session instead: :func:`warden_user_key` reads it. What each Rails
version writes, and which settings match it, is in the README ("Coming from Rails"). Values are
read, never written: this server sets no cookie.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from ..connection import Connection
from ..cookies import request_cookies
from .cookies import CookieJar, RailsCookies, RailsSecrets
from .messages import InvalidMessage, MessageProblem

__all__ = [
    "CookieJar",
    "InvalidMessage",
    "MessageProblem",
    "RailsConnection",
    "RailsCookies",
    "RailsSecrets",
    "warden_user_key",
]


class RailsConnection(Connection):
    """A :class:`~cable_server.Connection` whose ``cookies`` are a Rails :class:`CookieJar`."""

    #: The Rails app's cookie settings; set it on the subclass.
    rails_cookies: ClassVar[RailsCookies]

    @cached_property
    def cookies(self) -> CookieJar:
        """``cookies[...]``, ``cookies.signed[...]``, ``cookies.encrypted[...]`` as in Rails."""
        rails_cookies: RailsCookies | None = getattr(self, "rails_cookies", None)
        if rails_cookies is None:
            raise TypeError(f"{type(self).__name__}.rails_cookies is not set: give it the Rails app's RailsCookies")
        client = self.request.client
        peer = f"{client.host}:{client.port}" if client else "?"
        return rails_cookies.jar(request_cookies(self.request), peer=peer)

    @property
    def session(self) -> dict[str, Any]:
        """Rails' ``session`` (the cookie store's), ``{}`` when there is none or it is refused."""
        return self.cookies.session


def warden_user_key(session: dict[str, Any], scope: str = "user") -> tuple[Any, str] | None:
    """Devise's signed-in user of ``scope`` in a Rails session: ``(id, salt)``, or ``None``.

    Devise stores ``session["warden.user.<scope>.key"] = [record.to_key, record.authenticatable_salt]``.
    Load the record by ``id`` and accept it only if its salt is still ``salt`` (for
    ``database_authenticatable``, the first 29 characters of ``encrypted_password``), as Devise's
    ``serialize_from_session`` does: a password change then signs every session out.
    """
    entry = session.get(f"warden.user.{scope}.key")
    if not isinstance(entry, list) or len(entry) != 2:
        return None
    key, salt = entry
    if not isinstance(key, list) or len(key) != 1 or not isinstance(salt, str):
        return None
    return key[0], salt
