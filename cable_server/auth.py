"""Identifying connections by a signed token (a JWT) with an expiry.

Your main backend (Rails, Node, Python...) already knows who the user is; it mints a short-lived
token, the browser passes it when it opens the cable, and the cable server trusts the token's
claims instead of a session it cannot read. Tokens are HS256 JWTs by default, so any JWT library
can mint them: Ruby ``JWT.encode({sub: user.id.to_s, exp: 5.minutes.from_now.to_i}, secret, "HS256")``,
Node ``jwt.sign({sub: String(user.id)}, secret, {expiresIn: "5m"})``, Python :func:`issue_token`.

::

    from cable_server import CableServer
    from cable_server.auth import TokenAuth, TokenConnection

    class AppConnection(TokenConnection):
        identified_by = ("current_user",)
        token_auth = TokenAuth(secret=os.environ["CABLE_TOKEN_SECRET"], claims={"current_user": "sub"})

    cable = CableServer(connection_class=AppConnection, channels=[...])

and in the browser (the URL function is called again on every reconnect, so it can fetch a fresh
token)::

    createConsumer(() => `wss://cable.example/cable?token=${currentToken()}`)

Where the token comes from (``TokenAuth.sources``, tried in order, the first one present is the
only one checked): an ``Authorization: Bearer <token>`` header, a cookie (``cable_token``), or a
query parameter (``token``). Browsers cannot set headers on a WebSocket, so for a browser client
it is the cookie (when the cable shares the site of the app that sets it) or the query parameter
(cross-site; keep such tokens short-lived, since URLs end up in proxy logs). The header serves
native and server-side clients.

A missing, malformed, wrongly signed, not-yet-valid or expired token, or one signed with an
algorithm not in ``TokenAuth.algorithms`` (``none`` is never accepted), rejects the connection
exactly as ``reject_unauthorized_connection`` does: the client gets
``{"type":"disconnect","reason":"unauthorized","reconnect":false}`` and the socket closes. The
reason is logged at info on ``cable_server.auth``; the token never is. The token is checked when
the connection opens, not later: its expiry bounds when a client may connect, not how long it
may stay. Identifiers come from the claims only, never from other parameters of the request.

To check more than the signature (a revoked user, a role), override ``connect``, call
``await super().connect()`` first, then read ``self.token_claims``. Without the subclass,
``self.token_claims = auth.identify(self)`` in any ``Connection.connect`` does the same.
An AnyCable client recovering its session (``?sid=``) keeps the identity it had without
presenting a token again, as with AnyCable: ``connect`` does not run for it.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar

import jwt

from .connection import Connection
from .cookies import request_cookies
from .errors import InvalidToken

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

__all__ = ["TokenAuth", "TokenConnection", "TokenProblem", "TokenSource", "issue_token"]

logger = logging.getLogger("cable_server.auth")


class TokenSource(enum.StrEnum):
    """Where a client may put its token."""

    HEADER = "header"  # Authorization: Bearer <token> (not from browsers)
    COOKIE = "cookie"
    QUERY = "query"


class TokenProblem(enum.StrEnum):
    """Why a token was refused (the ``reason`` of :class:`~cable_server.errors.InvalidToken`, and the log)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad signature"
    ALGORITHM = "algorithm not allowed"
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    CLAIMS = "invalid claims"


# Subclasses first: InvalidSignatureError is a DecodeError, and every one is a PyJWTError.
_PROBLEMS: tuple[tuple[type[jwt.PyJWTError], TokenProblem], ...] = (
    (jwt.ExpiredSignatureError, TokenProblem.EXPIRED),
    (jwt.ImmatureSignatureError, TokenProblem.NOT_YET_VALID),
    (jwt.InvalidSignatureError, TokenProblem.BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, TokenProblem.ALGORITHM),
    (jwt.DecodeError, TokenProblem.MALFORMED),
    (jwt.InvalidTokenError, TokenProblem.CLAIMS),  # missing exp, wrong aud/iss, non-numeric iat...
    (jwt.PyJWTError, TokenProblem.MALFORMED),  # a key that does not suit the token's algorithm
)


def _default_claims() -> dict[str, str]:
    return {"current_user": "sub"}


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """How to find and check a connection's token, and which claims become which identifiers."""

    #: The HMAC secret shared with whatever mints the tokens (or, for RS*/ES* algorithms, the
    #: public key in PEM, which needs the ``cryptography`` package).
    secret: str | bytes
    #: Identifier attribute -> claim: ``{"current_user": "sub"}`` sets ``current_user`` from ``sub``.
    #: Every claim named here must be in the token.
    claims: Mapping[str, str] = field(default_factory=_default_claims)
    #: Algorithms a token may be signed with; the token's own header cannot widen this list.
    algorithms: tuple[str, ...] = ("HS256",)
    #: Where to look, in order; the first one present is the only one checked.
    sources: tuple[TokenSource, ...] = (TokenSource.HEADER, TokenSource.COOKIE, TokenSource.QUERY)
    query_param: str = "token"
    cookie: str = "cable_token"
    #: The header, and its scheme (``Authorization: Bearer <token>``); other schemes are ignored.
    header: str = "authorization"
    scheme: str = "Bearer"
    #: Claims a token must carry; ``exp`` by default, so no token is valid forever.
    required: tuple[str, ...] = ("exp",)
    #: When set, the ``aud`` / ``iss`` claim must match.
    audience: str | None = None
    issuer: str | None = None
    #: Seconds of clock skew allowed between the minting backend and this server, on ``exp``,
    #: ``nbf`` and ``iat`` (a token whose ``iat`` is ahead of this server's clock is not yet valid).
    leeway: float = 10.0

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("TokenAuth needs a secret")
        if not self.algorithms or any(name.lower() == "none" for name in self.algorithms):
            raise ValueError(f"algorithms must name real signature algorithms, got {self.algorithms!r}")
        if not self.sources or not all(isinstance(source, TokenSource) for source in self.sources):
            raise ValueError(f"sources must be TokenSource values, got {self.sources!r}")

    def token_from(self, request: HTTPConnection) -> tuple[TokenSource, str] | None:
        """The first token present in the allowed sources, and where it was; ``None`` if none is."""
        for source in self.sources:
            token: str | None
            if source is TokenSource.HEADER:
                scheme, _, token = request.headers.get(self.header, "").strip().partition(" ")
                token = token.strip() if scheme.lower() == self.scheme.lower() else None
            elif source is TokenSource.COOKIE:
                token = request_cookies(request).get(self.cookie)
            else:
                token = request.query_params.get(self.query_param)
            if token:
                return source, token
        return None

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, once its signature, algorithm, expiry and required claims check out;
        else raises :class:`~cable_server.errors.InvalidToken` saying why (never quoting the token)."""
        if not token.isascii():  # a JWT is base64url and dots; PyJWT would raise on a lone surrogate
            raise InvalidToken(TokenProblem.MALFORMED, "not ASCII")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.secret,
                algorithms=list(self.algorithms),
                options={"require": list(self.required)},
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
            )
        except jwt.PyJWTError as exc:
            problem = next(problem for kind, problem in _PROBLEMS if isinstance(exc, kind))
            detail = f"missing claim {exc.claim!r}" if isinstance(exc, jwt.MissingRequiredClaimError) else type(exc).__name__
            raise InvalidToken(problem, detail) from None
        _check_registered_claims(claims)
        unusable = [claim for claim in self.claims.values() if not _identifier_value(claims.get(claim))]
        if unusable:
            raise InvalidToken(TokenProblem.CLAIMS, f"claim {unusable[0]!r} is missing, empty or not a string or integer")
        return claims

    def identify(self, connection: Connection) -> dict[str, Any]:
        """Check the token of ``connection``'s request and set its identifiers from the claims;
        returns the claims. Any problem is logged and rejects the connection (Rails'
        ``reject_unauthorized_connection``: the ``unauthorized`` disconnect frame, then close)."""
        request = connection.request
        found = self.token_from(request)
        try:
            if found is None:
                raise InvalidToken(TokenProblem.MISSING, "no token in " + ", ".join(self.sources))
            claims = self.verify(found[1])
        except InvalidToken as exc:
            client = request.client
            peer = f"{client.host}:{client.port}" if client else "?"
            where = f" ({found[0]})" if found else ""
            logger.info("%s: token refused%s: %s", peer, where, exc)
            connection.reject_unauthorized_connection()
        for identifier, claim in self.claims.items():
            setattr(connection, identifier, claims[claim])
        connection.expires_at = claims.get("exp")
        return claims


def _identifier_value(value: Any) -> bool:
    """An identifier a claim may give: a non-empty string or an integer (``false``, ``{}``, ``[]``
    would identify nobody, and fail open where the app tells users apart)."""
    return (isinstance(value, str) and bool(value)) or (isinstance(value, int) and not isinstance(value, bool))


def _check_registered_claims(claims: Mapping[str, Any]) -> None:
    """RFC 7519's types, which PyJWT leaves loose: times are numbers (PyJWT takes ``"exp": "9999999999"``
    through ``int()``), the subject a non-empty string (an empty one would identify nobody)."""
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise InvalidToken(TokenProblem.CLAIMS, f"claim {name!r} is not a number")
    subject = claims.get("sub")
    if "sub" in claims and not (isinstance(subject, str) and subject):
        raise InvalidToken(TokenProblem.CLAIMS, "claim 'sub' is not a non-empty string")


class TokenConnection(Connection):
    """A ``Connection`` identified by the token its client presents (see the module docstring).

    Set ``token_auth`` on the subclass; ``identified_by`` must list every identifier its
    ``claims`` sets.
    """

    #: How tokens are found and checked, and which claims become identifiers.
    token_auth: ClassVar[TokenAuth]
    #: The verified claims, once :meth:`connect` has run.
    token_claims: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        auth = getattr(cls, "token_auth", None)
        if auth is not None:
            unlisted = set(auth.claims) - set(cls.identified_by)
            if unlisted:
                raise TypeError(f"{cls.__name__}: token claims set {sorted(unlisted)}, which identified_by does not list")

    async def connect(self) -> None:
        """Identify the connection from its token, or reject it."""
        self.token_claims = self.token_auth.identify(self)


def issue_token(
    secret: str | bytes,
    subject: str | None = None,
    *,
    expires_in: float | timedelta,
    claims: Mapping[str, Any] | None = None,
    algorithm: str = "HS256",
) -> str:
    """Mint a token :class:`TokenAuth` accepts: ``claims`` plus ``sub`` (when given), ``iat`` and
    ``exp`` (``expires_in`` seconds from now; keep it short, a token only has to open a socket).

    ``secret`` is the HMAC secret, or the private key for RS*/ES* algorithms.
    """
    now = datetime.now(tz=UTC)
    lifetime = expires_in if isinstance(expires_in, timedelta) else timedelta(seconds=expires_in)
    payload: dict[str, Any] = {**(claims or {}), "iat": now, "exp": now + lifetime}
    if subject is not None:
        payload["sub"] = subject
    return jwt.encode(payload, secret, algorithm=algorithm)
