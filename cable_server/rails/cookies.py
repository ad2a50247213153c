"""A Rails app's cookies and cookie-store session, read with its ``secret_key_base``.

:class:`RailsCookies` holds what Rails configures (the secret, the key derivation digest, the salts,
the session cookie's name, rotations); :meth:`RailsCookies.jar` gives a :class:`CookieJar` over a
request's cookies whose ``signed[...]``, ``encrypted[...]`` and ``session`` read what Rails'
``cookies.signed``, ``cookies.encrypted`` and ``session`` read. As in Rails, a cookie that is
missing, tampered, expired, made for another cookie, made with another secret or malformed reads
as ``None``; here the reason is also logged at info on ``cable_server.rails`` (the cookie's name,
never its value).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .messages import InvalidMessage, MessageProblem, decrypt, derive_key, hash_name, unwrap, verify_signature

__all__ = ["CookieJar", "RailsCookies", "RailsSecrets"]

logger = logging.getLogger("cable_server.rails")

_AES_256_KEY_BYTES = 32
_SIGNING_KEY_BYTES = 64  # KeyGenerator#generate_key's default size


@dataclass(frozen=True, slots=True)
class RailsSecrets:
    """One way a Rails app derives its cookie keys: the current one, or an older one still read."""

    #: Never in a ``repr`` (logs, error trackers' frame locals).
    secret_key_base: str = field(repr=False)
    #: ``config.active_support.key_generator_hash_digest_class``: ``"sha1"`` up to Rails 6.1 (and
    #: apps upgraded without changing it), ``"sha256"`` for apps on ``load_defaults 7.0`` or later.
    key_digest: str = "sha1"
    #: ``config.action_dispatch.signed_cookie_digest`` (the HMAC of signed cookies): ``"sha1"``
    #: unless the app sets it.
    signed_cookie_digest: str = "sha1"
    #: The key generator's iterations: 1000 in every Rails app.
    iterations: int = 1000

    def __post_init__(self) -> None:
        if not self.secret_key_base:
            raise ValueError("secret_key_base must not be empty")
        hash_name(self.key_digest)
        hash_name(self.signed_cookie_digest)


@dataclass(frozen=True, slots=True)
class RailsCookies:
    """How a Rails app signs and encrypts its cookies (the defaults are Rails' own)."""

    #: The current secrets (``Rails.application.secret_key_base`` and digests).
    secrets: RailsSecrets
    #: ``config.session_store :cookie_store, key: ...``: Rails' default is ``_<app name>_session``.
    session_key: str | None = None
    #: Older secrets still accepted, tried in order after ``secrets``
    #: (``config.action_dispatch.cookies_rotations``, e.g. the SHA1 keys after an upgrade to 7.0).
    rotations: tuple[RailsSecrets, ...] = ()
    signed_cookie_salt: str = "signed cookie"
    authenticated_encrypted_cookie_salt: str = "authenticated encrypted cookie"

    @classmethod
    def from_secret(
        cls, secret_key_base: str, *, key_digest: str = "sha1", signed_cookie_digest: str = "sha1", **options: Any
    ) -> RailsCookies:
        """Shorthand: ``RailsCookies.from_secret(os.environ["SECRET_KEY_BASE"], key_digest="sha256")``."""
        return cls(RailsSecrets(secret_key_base, key_digest=key_digest, signed_cookie_digest=signed_cookie_digest), **options)

    def jar(self, cookies: Mapping[str, str | None], *, peer: str = "?") -> CookieJar:
        """A jar over ``cookies`` (Rack-parsed, as :attr:`cable_server.Connection.cookies`);
        ``peer`` names the client in the log lines of refused cookies."""
        return CookieJar(cookies, self, peer)

    def _candidates(self) -> Iterator[RailsSecrets]:
        yield self.secrets
        yield from self.rotations

    def _key(self, secrets: RailsSecrets, salt: str, length: int) -> bytes:
        return derive_key(secrets.secret_key_base, salt, length, secrets.key_digest, secrets.iterations)

    def signed_payload(self, message: str) -> bytes:
        """The payload of a signed cookie's ``message`` (still to :func:`unwrap`), or :class:`InvalidMessage`."""
        return self._first_authentic(
            lambda secrets: verify_signature(
                message, self._key(secrets, self.signed_cookie_salt, _SIGNING_KEY_BYTES), secrets.signed_cookie_digest
            )
        )

    def encrypted_payload(self, message: str) -> bytes:
        """The plaintext of an encrypted cookie's ``message`` (still to :func:`unwrap`), or :class:`InvalidMessage`."""
        return self._first_authentic(
            lambda secrets: decrypt(message, self._key(secrets, self.authenticated_encrypted_cookie_salt, _AES_256_KEY_BYTES))
        )

    def _first_authentic(self, payload: Callable[[RailsSecrets], bytes]) -> bytes:
        """The payload under the first secrets it is authentic under (Rails' rotation order)."""
        problem: InvalidMessage | None = None
        for secrets in self._candidates():
            try:
                return payload(secrets)
            except InvalidMessage as exc:
                if exc.reason is not MessageProblem.NOT_AUTHENTIC:
                    raise
                problem = problem or exc
        assert problem is not None
        raise problem


@dataclass(slots=True)
class _Reader:
    """``cookies.signed`` or ``cookies.encrypted``: ``jar.encrypted["user_id"]`` is the value or ``None``."""

    jar: CookieJar
    kind: str
    payload: Callable[[str], bytes]
    _values: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        if name not in self._values:
            self._values[name] = self._value(name)
        return self._values[name]

    def _value(self, name: str) -> Any:
        message = self.jar.get(name)
        if message is None:
            return None
        try:
            payload = self.payload(message)
            try:
                return unwrap(payload, f"cookie.{name}")
            except InvalidMessage as exc:
                # As Rails: a message without the cookie's purpose may be one written without
                # metadata (before Rails 6.0); it is read once more with no purpose.
                if exc.reason is not MessageProblem.PURPOSE:
                    raise
                return unwrap(payload, None)
        except InvalidMessage as exc:
            log = logger.warning if exc.reason is MessageProblem.MARSHAL else logger.info
            log("%s: %s cookie %r refused: %s", self.jar.peer, self.kind, name, exc.reason)
            return None


class CookieJar(Mapping[str, str | None]):
    """A request's cookies: plain ones by name, Rails' signed and encrypted ones, and the session."""

    def __init__(self, cookies: Mapping[str, str | None], rails: RailsCookies, peer: str = "?") -> None:
        self._cookies = cookies
        self.rails = rails
        self.peer = peer
        #: ``cookies.signed[name]``: the value, or ``None`` (missing or refused).
        self.signed = _Reader(self, "signed", rails.signed_payload)
        #: ``cookies.encrypted[name]``: the value, or ``None`` (missing or refused).
        self.encrypted = _Reader(self, "encrypted", rails.encrypted_payload)

    def __getitem__(self, name: str) -> str | None:
        return self._cookies[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._cookies)

    def __len__(self) -> int:
        return len(self._cookies)

    @property
    def session(self) -> dict[str, Any]:
        """The cookie-store session (Rails' ``session``; ``{}`` without one, or when refused).

        Rails keeps it in the encrypted cookie ``session_key``, with ``session_id`` among its keys.
        """
        if self.rails.session_key is None:
            raise LookupError("RailsCookies.session_key is not set: name the session cookie to read the session")
        session = self.encrypted[self.rails.session_key]
        return session if isinstance(session, dict) else {}

    def __repr__(self) -> str:  # never the values: they are credentials
        return f"<CookieJar {sorted(self._cookies)!r}>"
