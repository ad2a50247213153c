"""The demo's guest identity: a random id the server issues, carried in a signed, HttpOnly cookie.

Why: the demo used to identify a browser by ``?name=``, a value the client chose (the Vue chat's
has 32 random bits) that every access-log line wrote out in clear; whoever presented it was that
user, read their conversation and reset it. A guest id is drawn by the server (128 random bits)
and travels only in a cookie signed with the server's secret: it cannot be guessed or forged,
scripts cannot read it (``HttpOnly``), other sites cannot send it (``SameSite=Lax``), and no
request line holds it. The id itself may be logged and name rooms: without the signature it is
worth nothing. This is an identity for the demo only; a real application identifies its users
by its own session or token in ``Connection.connect``.

On the wire (sans-I/O here: strings in, strings out; :mod:`cable_server.demo` does the I/O)::

    Set-Cookie: cable_demo_guest=<id>.<mac>; Max-Age=2592000; Path=/; HttpOnly; SameSite=Lax[; Secure]

``<id>`` is 22 url-safe base64 characters (16 random bytes), ``<mac>`` the url-safe base64 of
``HMAC-SHA256(secret, "cable-demo-guest:" + id)`` without padding (43 characters); neither needs
escaping in a cookie. The cookie is issued on the WebSocket handshake response (the ``101``), to a
client that opts into the demo's identity by naming itself (``?name=``) and carries no valid
cookie; browsers store it and send it with their next handshakes. ``Secure`` is added when the
request came over TLS (``wss``, or ``https`` as a proxy reported it).

The secret is ``CABLE_DEMO_SECRET`` when set, else random per server: guests then get a new
identity (and an empty conversation) when the server restarts. ``cable-server --workers`` draws
one for all its workers, which must verify each other's cookies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = ["COOKIE", "SECRET_VARIABLE", "Admission", "GuestPass"]

logger = logging.getLogger("cable_server.demo")

#: The cookie's name.
COOKIE: Final = "cable_demo_guest"
#: The environment variable of the signing secret.
SECRET_VARIABLE: Final = "CABLE_DEMO_SECRET"
#: How long a browser keeps the cookie: 30 days.
MAX_AGE: Final = 30 * 24 * 3600
#: Fewer characters than this in ``CABLE_DEMO_SECRET`` get a warning (a short secret can be guessed
#: from one cookie, offline).
SHORT_SECRET: Final = 32

_PURPOSE: Final = b"cable-demo-guest:"
_ID_BYTES: Final = 16
_GUEST_ID: Final = re.compile(r"[A-Za-z0-9_-]{22}")
_MAC: Final = re.compile(r"[A-Za-z0-9_-]{43}")
_SECURE_SCHEMES: Final = frozenset({"https", "wss"})


@dataclass(frozen=True, slots=True)
class Admission:
    """What a handshake decided: who the connection is, and the cookie to send back, if any."""

    #: The guest id that identifies the connection; ``None``: anonymous.
    guest: str | None
    #: A ``Set-Cookie`` value for the handshake response (a guest issued just now), else ``None``.
    set_cookie: str | None = None


class GuestPass:
    """Issues guest ids and checks the cookies that carry them, with one secret."""

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if not key:
            raise ValueError("the guest secret is empty")
        self._key = key

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> GuestPass:
        """With ``CABLE_DEMO_SECRET``, else a random secret of this server alone."""
        configured = environ.get(SECRET_VARIABLE, "")
        if not configured:
            return cls(secrets.token_bytes(32))
        if len(configured) < SHORT_SECRET:
            logger.warning("%s is shorter than %d characters: guest cookies may be forged", SECRET_VARIABLE, SHORT_SECRET)
        return cls(configured)

    def _mac(self, guest: str) -> str:
        digest = hmac.new(self._key, _PURPOSE + guest.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def issue(self) -> tuple[str, str]:
        """A new guest: its id and the cookie value that proves it (``<id>.<mac>``)."""
        guest = secrets.token_urlsafe(_ID_BYTES)
        return guest, f"{guest}.{self._mac(guest)}"

    def verify(self, value: str | None) -> str | None:
        """The guest id in a cookie value this secret signed; ``None`` for anything else (missing,
        malformed, tampered with, signed with another secret)."""
        if value is None:
            return None
        guest, _, mac = value.partition(".")
        if not _GUEST_ID.fullmatch(guest) or not _MAC.fullmatch(mac):
            return None
        return guest if hmac.compare_digest(mac, self._mac(guest)) else None

    @staticmethod
    def set_cookie(value: str, *, secure: bool) -> str:
        """The ``Set-Cookie`` header value carrying ``value``: for every path, for 30 days, out of
        scripts' reach, not sent by other sites' requests; ``Secure`` when ``secure``."""
        header = f"{COOKIE}={value}; Max-Age={MAX_AGE}; Path=/; HttpOnly; SameSite=Lax"
        return f"{header}; Secure" if secure else header

    def admit(self, cookies: Mapping[str, str | None], *, named: bool, scheme: str) -> Admission:
        """Who a handshake is, from its cookies (parsed as :attr:`Connection.cookies` parses them).

        ``named``: the client gave itself a name (``?name=``), as the demo's own pages do; only
        those take part in the guest identity. A client that names nothing (the frontend written
        for the Rails original) is anonymous, whatever cookie it carries, so that it is served as
        it always was. A named client is its valid cookie's guest, else a guest issued now, whose
        cookie goes back with the handshake response (``scheme``: the request's, ``wss`` or
        ``https`` making the cookie ``Secure``). A forged or stale cookie is never anyone's: it
        gets a new guest, with an empty conversation.
        """
        if not named:
            return Admission(None)
        guest = self.verify(cookies.get(COOKIE))
        if guest is not None:
            return Admission(guest)
        guest, value = self.issue()
        return Admission(guest, self.set_cookie(value, secure=scheme in _SECURE_SCHEMES))
