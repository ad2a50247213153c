"""Beside a Rails app (cable_server.rails): connections identified by the cookies and the session Rails
itself wrote. Every cookie here is minted by Rails' own ActionDispatch (Debian's Rails 6.1, through
tests/rails_mint.rb), SHA1 and SHA256 key derivation, and read by the server over a real WebSocket;
anything tampered, expired, made for another cookie or secret, malformed or Marshal'd is refused
with Rails' unauthorized disconnect and an info line that never holds the value."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cable_server import CableServer, Channel, Settings
from cable_server.cookies import parse_cookie_header
from cable_server.rails import InvalidMessage, MessageProblem, RailsConnection, RailsCookies, RailsSecrets, warden_user_key
from cable_server.rails.messages import unwrap
from protocol_tests.client import CableClient, closed_with, ident

from .conftest import RunningServer, ServerFactory

SECRET = "6f1e" * 32  # a secret_key_base as `rails secret` prints one (128 hex digits)
OLD_SECRET = "0ld5" * 32
SESSION_KEY = "_blog_session"
SALT = "$2a$12$K8sU5GxXk3v0oTz7rQe1Ou"  # Devise's authenticatable_salt: encrypted_password[0, 29]
WHOAMI = ident("WhoAmIChannel")
UNAUTHORIZED = '{"type":"disconnect","reason":"unauthorized","reconnect":false}'
MINT = Path(__file__).with_name("rails_mint.rb")


def job(*cookies: dict[str, Any], secret: str = SECRET, session: dict[str, Any] | None = None, **config: Any) -> dict[str, Any]:
    return {"secret_key_base": secret, "session_key": SESSION_KEY, "cookies": list(cookies), "session": session or {}, **config}


def encrypted(name: str = "user_id", value: Any = 42, **options: Any) -> dict[str, Any]:
    return {"jar": "encrypted", "name": name, "value": value, **options}


def signed(name: str = "user_id", value: Any = 42, **options: Any) -> dict[str, Any]:
    return {"jar": "signed", "name": name, "value": value, **options}


DEVISE = {"warden.user.user.key": [[42], SALT], "_csrf_token": "x"}
JOBS: dict[str, dict[str, Any]] = {
    "encrypted sha1": job(encrypted()),
    "encrypted sha256": job(encrypted(), key_digest="sha256"),
    "encrypted sha1, expiring in an hour": job(encrypted(expires_in=3600)),
    "encrypted, no metadata (before Rails 6.0)": job(encrypted(value="alice"), metadata=False),
    "encrypted hash": job(encrypted(value={"id": 42, "roles": ["admin"]})),
    "signed sha1": job(signed()),
    "signed sha256 derivation, SHA256 HMAC": job(signed(), key_digest="sha256", signed_cookie_digest="SHA256"),
    "devise session sha1": job(session=DEVISE),
    "devise session sha256": job(session=DEVISE, key_digest="sha256"),
    "expired": job(encrypted(expires_in=-60)),
    "signed, expired": job(signed(expires_in=-60)),
    "another cookie's value": job(encrypted(name="admin_id", value=1)),
    "another secret": job(encrypted(), secret=OLD_SECRET),
    "old secret, sha1 (before the upgrade)": job(encrypted(), secret=OLD_SECRET),
    "marshal": job(encrypted(), serializer="marshal"),
    "signed, marshal": job(signed(), serializer="marshal"),
}


@pytest.fixture(scope="module")
def minted() -> dict[str, str]:
    """Job name -> the Cookie header a browser sends back after Rails' response (one Ruby run)."""
    out = subprocess.run(["ruby", str(MINT)], input=json.dumps(list(JOBS.values())), capture_output=True, text=True, check=True)
    return dict(zip(JOBS, json.loads(out.stdout), strict=True))


class WhoAmIChannel(Channel):
    def subscribed(self) -> None:
        self.transmit({"current_user": self.current_user})


def cable_for(rails_cookies: RailsCookies) -> CableServer:
    class AppConnection(RailsConnection):
        """The README's two recipes; the query only picks which one a test exercises."""

        identified_by = ("current_user",)

        async def connect(self) -> None:
            recipe = self.request.query_params.get("recipe", "encrypted")
            if recipe == "devise":
                found = warden_user_key(self.session)
                user = found[0] if found and found[1] == SALT else None
            else:
                user = (self.cookies.encrypted if recipe == "encrypted" else self.cookies.signed)["user_id"]
            if user is None:
                self.reject_unauthorized_connection()
            self.current_user = user

    AppConnection.rails_cookies = rails_cookies
    return CableServer(connection_class=AppConnection, channels=[WhoAmIChannel], settings=Settings(ping_interval=0.5))


SHA1 = RailsCookies(RailsSecrets(SECRET), session_key=SESSION_KEY)
SHA256 = RailsCookies(RailsSecrets(SECRET, key_digest="sha256"), session_key=SESSION_KEY)


@pytest.fixture
async def server(serve: ServerFactory) -> RunningServer:
    return await serve(cable_for(SHA1))


async def whoami(server: RunningServer, cookie: str, recipe: str = "encrypted") -> Any:
    client = await server.client(f"?recipe={recipe}", headers={"Cookie": cookie})
    await client.send({"command": "subscribe", "identifier": WHOAMI})
    return (await client.recv())["message"]["current_user"]


async def assert_refused(server: RunningServer, cookie: str, caplog: pytest.LogCaptureFixture, recipe: str = "encrypted") -> str:
    """Unauthorized disconnect and close; returns the one log line about the cookie, checked free of its value."""
    caplog.set_level(logging.INFO, logger="cable_server")
    client: CableClient = await server.client(f"?recipe={recipe}", welcome=False, headers={"Cookie": cookie})
    assert await client.recv_raw(pings=True) == UNAUTHORIZED
    assert await closed_with(client) == 1000
    lines = [record for record in caplog.records if record.name == "cable_server.rails"]
    values = [piece.partition("=")[2][:24] for piece in cookie.split("; ")]
    for record in caplog.records:  # (values too short to tell apart from a port number are not looked for)
        assert not [value for value in values if len(value) >= 8 and value in record.getMessage()]
    assert len(lines) == 1, [record.getMessage() for record in lines]
    return lines[0].getMessage()


# --- read as Rails reads them ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "rails", "recipe", "user"),
    [
        ("encrypted sha1", SHA1, "encrypted", 42),
        ("encrypted sha256", SHA256, "encrypted", 42),
        ("encrypted sha1, expiring in an hour", SHA1, "encrypted", 42),
        ("encrypted, no metadata (before Rails 6.0)", SHA1, "encrypted", "alice"),
        ("encrypted hash", SHA1, "encrypted", {"id": 42, "roles": ["admin"]}),
        ("signed sha1", SHA1, "signed", 42),
        (
            "signed sha256 derivation, SHA256 HMAC",
            RailsCookies(RailsSecrets(SECRET, key_digest="sha256", signed_cookie_digest="SHA256")),
            "signed",
            42,
        ),
        ("devise session sha1", SHA1, "devise", 42),
        ("devise session sha256", SHA256, "devise", 42),
    ],
)
async def test_cookies_and_sessions_rails_wrote_identify_the_connection(
    serve: ServerFactory, minted: dict[str, str], case: str, rails: RailsCookies, recipe: str, user: Any
) -> None:
    """cookies.encrypted / cookies.signed / the cookie-store session, as Rails 6.1 (SHA1) and 7.0 (SHA256) write them."""
    server = await serve(cable_for(rails))
    assert await whoami(server, minted[case], recipe) == user


def test_the_session_is_rails_session(minted: dict[str, str]) -> None:
    """The whole session comes through, Rails' session_id included; without a session cookie it is empty."""
    jar = SHA1.jar(parse_cookie_header(minted["devise session sha1"]))
    assert jar.session.keys() == {"session_id", *DEVISE} and jar.session["warden.user.user.key"] == [[42], SALT]
    assert SHA1.jar({}).session == {}


async def test_a_rotation_reads_cookies_of_the_old_secrets(serve: ServerFactory, minted: dict[str, str]) -> None:
    """After an upgrade to 7.0 (SHA256) with the SHA1 keys rotated in, or a changed secret_key_base with the
    old one rotated in, the cookies browsers still hold keep working; without the rotation they do not."""
    rotated = RailsCookies(RailsSecrets(SECRET, key_digest="sha256"), rotations=(RailsSecrets(SECRET), RailsSecrets(OLD_SECRET)))
    server = await serve(cable_for(rotated))
    assert await whoami(server, minted["encrypted sha1"]) == 42
    assert await whoami(server, minted["encrypted sha256"]) == 42
    assert await whoami(server, minted["old secret, sha1 (before the upgrade)"]) == 42


# --- refused -------------------------------------------------------------------------------------


def tamper(cookie: str) -> str:
    """The cookie with the first base64 character of its message changed (still base64, still escaped)."""
    name, _, value = cookie.partition("=")
    message = unquote(value)
    return f"{name}={quote(('B' if message[0] != 'B' else 'C') + message[1:], safe='')}"


@pytest.mark.parametrize(
    ("case", "recipe", "problem"),
    [
        ("expired", "encrypted", MessageProblem.EXPIRED),
        ("signed, expired", "signed", MessageProblem.EXPIRED),
        ("another secret", "encrypted", MessageProblem.NOT_AUTHENTIC),
        ("encrypted sha256", "encrypted", MessageProblem.NOT_AUTHENTIC),  # a 7.0 cookie, the server set up for 6.1
        ("signed sha256 derivation, SHA256 HMAC", "signed", MessageProblem.NOT_AUTHENTIC),
        ("marshal", "encrypted", MessageProblem.MARSHAL),
        ("signed, marshal", "signed", MessageProblem.MARSHAL),
    ],
)
async def test_cookies_that_do_not_check_out_reject_the_connection(
    server: RunningServer,
    minted: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    case: str,
    recipe: str,
    problem: MessageProblem,
) -> None:
    """reject_unauthorized_connection, and one log line with the cookie's name and why (never its value);
    a Marshal cookie is never loaded, and says how to fix it, at warning."""
    line = await assert_refused(server, minted[case], caplog, recipe)
    assert f"cookie 'user_id' refused: {problem}" in line
    levels = [record.levelno for record in caplog.records if record.name == "cable_server.rails"]
    assert levels == [logging.WARNING if problem is MessageProblem.MARSHAL else logging.INFO]


async def test_tampered_renamed_and_garbage_cookies_are_refused(
    server: RunningServer, minted: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A flipped character, another cookie's value under this name (its purpose says so), and values that
    are not Rails messages at all."""
    cases = {
        tamper(minted["encrypted sha1"]): MessageProblem.NOT_AUTHENTIC,
        minted["another cookie's value"].replace("admin_id=", "user_id="): MessageProblem.PURPOSE,
        "user_id=42": MessageProblem.MALFORMED,
        "user_id=a--b--c": MessageProblem.MALFORMED,
        "user_id=%E2%82%AC--%E2%82%AC--%E2%82%AC": MessageProblem.MALFORMED,
        "user_id=QUFBQQ%3D%3D--QUFB--QUFBQUFBQUFBQUFBQUFBQQ%3D%3D": MessageProblem.MALFORMED,  # a 3-byte IV
        "user_id=QUFBQQ%3D%3D----QUFBQUFBQUFBQUFBQUFBQQ%3D%3D": MessageProblem.MALFORMED,  # no IV
    }
    for cookie, problem in cases.items():
        caplog.clear()
        assert f"refused: {problem}" in await assert_refused(server, cookie, caplog)
    caplog.clear()
    line = await assert_refused(server, tamper(minted["signed sha1"]), caplog, "signed")
    assert f"refused: {MessageProblem.NOT_AUTHENTIC}" in line


async def test_no_cookie_is_refused_without_a_log_line(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """A missing cookie reads as None (Rails' nil): the app rejects, nothing is logged about cookies."""
    caplog.set_level(logging.INFO, logger="cable_server")
    client = await server.client(welcome=False, headers={"Cookie": "other=1"})
    assert await client.recv_raw(pings=True) == UNAUTHORIZED
    assert not [record for record in caplog.records if record.name == "cable_server.rails"]


def test_secrets_are_checked_when_configured() -> None:
    """An empty secret or an unknown digest fails at startup, not at the first connection; neither the
    secret nor a cookie's value is ever in a repr (logs, error trackers)."""
    with pytest.raises(ValueError, match="secret_key_base"):
        RailsSecrets("")
    with pytest.raises(ValueError, match="digest"):
        RailsSecrets(SECRET, key_digest="sha3000")
    assert "6f1e" not in repr(SHA1) and "6f1e" not in repr(SHA1.jar({"user_id": "secret-value"}))
    assert "secret-value" not in repr(SHA1.jar({"user_id": "secret-value"}))


def test_warden_user_key_reads_only_devise_shape() -> None:
    assert warden_user_key(DEVISE) == (42, SALT)
    assert warden_user_key({"warden.user.admin.key": [["7"], "s"]}, scope="admin") == ("7", "s")
    key = "warden.user.user.key"
    for session in ({}, {key: 42}, {key: [[1, 2], "s"]}, {key: [[1], 5]}):
        assert warden_user_key(session) is None


# --- the envelope, without Ruby ------------------------------------------------------------------


def test_the_envelope_of_each_rails_version_is_unwrapped() -> None:
    """6.0-7.0 base64 the JSON value under "message"; 7.1+ (use_message_serializer_for_metadata) put it
    under "data" (shape from Rails 7.1's Messages::Metadata; no Rails 7.1 here to mint one); no purpose
    matches no purpose only; a null expiry never expires."""
    legacy = json.dumps({"_rails": {"message": base64.b64encode(b'{"id":7}').decode(), "exp": None, "pur": "cookie.u"}})
    assert unwrap(legacy.encode(), "cookie.u") == {"id": 7}
    current = {"_rails": {"data": [1, "x"], "exp": "2999-01-01T00:00:00.000Z", "pur": "cookie.u"}}
    assert unwrap(json.dumps(current).encode(), "cookie.u") == [1, "x"]
    with pytest.raises(InvalidMessage) as refused:
        unwrap(json.dumps({"_rails": {**current["_rails"], "exp": "2001-01-01T00:00:00.000Z"}}).encode(), "cookie.u")
    assert refused.value.reason is MessageProblem.EXPIRED
    assert unwrap(b"42", None) == 42
    for purpose in ("cookie.v", None):
        with pytest.raises(InvalidMessage, match="another purpose"):
            unwrap(json.dumps(current).encode(), purpose)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("AZaz09+/=-%\u20ac\ud800 "), max_size=80))
def test_any_cookie_value_reads_as_a_value_or_a_refusal(value: str) -> None:
    """Whatever a client puts in the cookie: a value or ``None`` with a reason, never another exception."""
    jar = SHA1.jar({"user_id": value, SESSION_KEY: value})
    assert jar.encrypted["user_id"] is None and jar.signed["user_id"] is None and jar.session == {}


async def test_a_connection_without_rails_cookies_says_so(serve: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    """Forgetting ``rails_cookies`` fails the connection (1011, as any error in connect) with a log saying what to set."""

    class Forgetful(RailsConnection):
        async def connect(self) -> None:
            self.cookies.encrypted["user_id"]

    server = await serve(CableServer(connection_class=Forgetful, channels=[WhoAmIChannel]))
    assert await closed_with(await server.client(welcome=False)) == 1011
    assert "Forgetful.rails_cookies is not set" in caplog.text
