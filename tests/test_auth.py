"""Signed-token identification (cable_server.auth): a JWT with an expiry, from a header, a cookie
or a query parameter, sets the connection's identifiers; any bad or missing token gets Rails'
unauthorized disconnect and the socket closes. Over real sockets, plus the pure parts."""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cable_server import CableServer, Channel, InvalidToken, Settings, TokenAuth, TokenConnection, TokenSource, issue_token
from cable_server.auth import TokenProblem
from protocol_tests.client import CableClient, closed_with, ident

from .conftest import RunningServer, ServerFactory

SECRET = "s3cret-" + "x" * 57  # 64 bytes: long enough for HS512 too (PyJWT warns below the hash size)
WHOAMI = ident("WhoAmIChannel")
UNAUTHORIZED = '{"type":"disconnect","reason":"unauthorized","reconnect":false}'
CLAIMS = {"current_user": "sub", "account": "acct"}


class WhoAmIChannel(Channel):
    """Transmits the connection's identifiers as it subscribes."""

    def subscribed(self) -> None:
        self.transmit({"current_user": self.current_user, "account": self.account})


def cable_with(auth: TokenAuth) -> CableServer:
    class AppConnection(TokenConnection):
        identified_by = ("current_user", "account")
        token_auth = auth

    return CableServer(connection_class=AppConnection, channels=[WhoAmIChannel], settings=Settings(ping_interval=0.5))


def token_for(user: str = "alice", *, expires_in: float = 300, secret: str = SECRET, **claims: Any) -> str:
    return issue_token(secret, user, expires_in=expires_in, claims={"acct": 7, **claims})


def presented(source: TokenSource, token: str) -> dict[str, Any]:
    """Arguments of ``server.client`` that present ``token`` through ``source`` under the default names."""
    if source is TokenSource.QUERY:
        return {"query": f"?token={token}"}
    if source is TokenSource.COOKIE:
        return {"headers": {"Cookie": f"cable_token={token}"}}
    return {"headers": {"Authorization": f"Bearer {token}"}}


@pytest.fixture
async def server(serve: ServerFactory) -> RunningServer:
    return await serve(cable_with(TokenAuth(secret=SECRET, claims=CLAIMS)))


async def whoami(client: CableClient) -> Any:
    await client.send({"command": "subscribe", "identifier": WHOAMI})
    identity = (await client.recv())["message"]
    assert await client.recv() == {"identifier": WHOAMI, "type": "confirm_subscription"}
    return identity


async def assert_refused(server: RunningServer, caplog: pytest.LogCaptureFixture, problem: TokenProblem, **how: Any) -> None:
    """The client gets exactly the unauthorized disconnect, no welcome, then close 1000; the log says why."""
    caplog.set_level(logging.INFO, logger="cable_server")
    client = await server.client(welcome=False, **how)
    assert await client.recv_raw(pings=True) == UNAUTHORIZED
    assert await closed_with(client) == 1000
    refusals = [record.getMessage() for record in caplog.records if record.name == "cable_server.auth"]
    assert len(refusals) == 1 and "token refused" in refusals[0] and f": {problem}" in refusals[0], refusals
    assert [record.levelno for record in caplog.records if record.name == "cable_server.auth"] == [logging.INFO]


# --- accepted ----------------------------------------------------------------------------------


@pytest.mark.parametrize("source", list(TokenSource))
async def test_a_valid_token_from_each_source_identifies_the_connection(server: RunningServer, source: TokenSource) -> None:
    """Bearer header, cookie or query param: welcome, and channels see the identifiers from the claims."""
    client = await server.client(**presented(source, token_for("alice")))
    assert await whoami(client) == {"current_user": "alice", "account": 7}


async def test_the_client_cannot_choose_its_identity_with_other_params(server: RunningServer) -> None:
    """Query params and cookies named like identifiers or claims change nothing: only the token counts."""
    query = f"?token={token_for('alice')}&current_user=mallory&sub=mallory&account=1&acct=1&user=mallory"
    client = await server.client(query, headers={"Cookie": "current_user=mallory; sub=mallory"})
    assert await whoami(client) == {"current_user": "alice", "account": 7}


async def test_names_and_allowed_sources_are_configurable(serve: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    """Custom header, cookie and param names; a token in a source that is not allowed is not looked at."""
    auth = TokenAuth(
        secret=SECRET, claims=CLAIMS, sources=(TokenSource.COOKIE, TokenSource.HEADER), cookie="sess", header="x-cable-auth"
    )
    server = await serve(cable_with(auth))
    by_cookie = await server.client(headers={"Cookie": f"sess={token_for('bob')}"})
    assert (await whoami(by_cookie))["current_user"] == "bob"
    by_header = await server.client(headers={"X-Cable-Auth": f"bearer {token_for('carol')}"})
    assert (await whoami(by_header))["current_user"] == "carol"
    await assert_refused(server, caplog, TokenProblem.MISSING, query=f"?token={token_for('dave')}")


async def test_issue_token_mints_what_rails_or_node_would(server: RunningServer) -> None:
    """A token minted by any JWT library (here PyJWT directly, as ruby-jwt or jsonwebtoken would) is accepted."""
    foreign = jwt.encode({"sub": "erin", "acct": "team-1", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    client = await server.client(**presented(TokenSource.QUERY, foreign))
    assert await whoami(client) == {"current_user": "erin", "account": "team-1"}
    claims = jwt.decode(token_for("alice", expires_in=120), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["acct"] == 7 and claims["exp"] - claims["iat"] == 120


# --- refused -------------------------------------------------------------------------------------


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    return f"{header}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"


def forged_payload(token: str) -> str:
    """Alice's token with the payload of Mallory's, signatures left as they were."""
    header, _, signature = token.split(".")
    return f"{header}.{token_for('mallory').split('.')[1]}.{signature}"


def signed(**claims: Any) -> str:
    """A token signed with the right secret, holding alice's claims with ``claims`` on top."""
    return jwt.encode({"sub": "alice", "acct": 7, "exp": 2**31, **claims}, SECRET, algorithm="HS256")


REFUSED: list[tuple[str, TokenProblem, str | None]] = [
    ("expired", TokenProblem.EXPIRED, token_for(expires_in=-60)),
    ("tampered signature", TokenProblem.BAD_SIGNATURE, tampered(token_for())),
    ("payload swapped under a valid signature", TokenProblem.BAD_SIGNATURE, forged_payload(token_for())),
    ("signed with another secret", TokenProblem.BAD_SIGNATURE, token_for(secret="another-secret-" + "y" * 49)),
    ("alg none", TokenProblem.ALGORITHM, jwt.encode({"sub": "alice", "acct": 7, "exp": 2**31}, None, algorithm="none")),
    (
        "HS512 when only HS256 is allowed",
        TokenProblem.ALGORITHM,
        jwt.encode({"sub": "a", "exp": 2**31}, SECRET, algorithm="HS512"),
    ),
    ("not a JWT", TokenProblem.MALFORMED, "not.a.jwt"),
    ("no expiry", TokenProblem.CLAIMS, jwt.encode({"sub": "alice", "acct": 7}, SECRET, algorithm="HS256")),
    ("no claim for an identifier", TokenProblem.CLAIMS, jwt.encode({"sub": "alice", "exp": 2**31}, SECRET, algorithm="HS256")),
    ("not valid before an hour from now", TokenProblem.NOT_YET_VALID, token_for(nbf=int(time.time()) + 3600)),
    ("an empty subject", TokenProblem.CLAIMS, jwt.encode({"sub": "", "acct": 7, "exp": 2**31}, SECRET, algorithm="HS256")),
    ("a numeric subject", TokenProblem.CLAIMS, jwt.encode({"sub": 42, "acct": 7, "exp": 2**31}, SECRET, algorithm="HS256")),
    ("an empty identifier claim", TokenProblem.CLAIMS, token_for(acct="")),
    ("an identifier claim of false", TokenProblem.CLAIMS, token_for(acct=False)),
    ("an identifier claim that is an object", TokenProblem.CLAIMS, token_for(acct={})),
    ("an identifier claim that is a list", TokenProblem.CLAIMS, token_for(acct=[7])),
    ("exp as a string", TokenProblem.CLAIMS, jwt.encode({"sub": "a", "acct": 7, "exp": str(2**31)}, SECRET, algorithm="HS256")),
    (
        "iat as a string",
        TokenProblem.CLAIMS,
        jwt.encode({"sub": "a", "acct": 7, "exp": 2**31, "iat": "0"}, SECRET, algorithm="HS256"),
    ),
    ("nbf as a boolean", TokenProblem.CLAIMS, token_for(nbf=False)),
    ("no token at all", TokenProblem.MISSING, None),
]


def assert_token_not_logged(caplog: pytest.LogCaptureFixture, token: str) -> None:
    assert not [record for record in caplog.records if token in record.getMessage() or token[-20:] in record.getMessage()]


@pytest.mark.parametrize(("problem", "token"), [case[1:] for case in REFUSED], ids=[case[0] for case in REFUSED])
async def test_a_bad_or_missing_token_gets_the_unauthorized_disconnect(
    server: RunningServer, caplog: pytest.LogCaptureFixture, problem: TokenProblem, token: str | None
) -> None:
    """Exactly {"type":"disconnect","reason":"unauthorized","reconnect":false}, close 1000, and the reason
    logged at info; the token appears in no log line. (Presented as a query param, the browsers' way.)"""
    await assert_refused(server, caplog, problem, **(presented(TokenSource.QUERY, token) if token else {}))
    if token:
        assert_token_not_logged(caplog, token)


@pytest.mark.parametrize("source", [TokenSource.HEADER, TokenSource.COOKIE])
@pytest.mark.parametrize(("problem", "token"), [case[1:] for case in REFUSED[:2]], ids=[case[0] for case in REFUSED[:2]])
async def test_header_and_cookie_tokens_are_checked_the_same_way(
    server: RunningServer, caplog: pytest.LogCaptureFixture, source: TokenSource, problem: TokenProblem, token: str
) -> None:
    """An expired or tampered token in the Bearer header or the cookie is refused just the same."""
    await assert_refused(server, caplog, problem, **presented(source, token))
    assert_token_not_logged(caplog, token)


async def test_a_bad_token_is_not_rescued_by_a_good_one_elsewhere(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Only the first source present is checked: a forged header is refused even with a valid token in the query."""
    how = {"query": f"?token={token_for('alice')}", "headers": {"Authorization": f"Bearer {tampered(token_for('mallory'))}"}}
    await assert_refused(server, caplog, TokenProblem.BAD_SIGNATURE, **how)


async def test_other_authorization_schemes_are_not_tokens(server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """``Authorization: Basic ...`` is not read as a token (and nothing else was presented)."""
    await assert_refused(server, caplog, TokenProblem.MISSING, headers={"Authorization": f"Basic {token_for()}"})


# --- configuration and the pure parts ------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"secret": ""},
        {"secret": SECRET, "algorithms": ("none",)},
        {"secret": SECRET, "algorithms": ("HS256", "None")},
        {"secret": SECRET, "sources": ()},
    ],
)
def test_unsafe_configurations_are_refused_at_once(options: dict[str, Any]) -> None:
    """No secret, the "none" algorithm or no source at all is a ValueError when TokenAuth is built."""
    with pytest.raises(ValueError):
        TokenAuth(**options)


def test_claims_must_map_to_listed_identifiers() -> None:
    """A claim mapped to an attribute that identified_by does not list is a TypeError when the class is defined."""
    with pytest.raises(TypeError, match="account"):

        class Broken(TokenConnection):
            identified_by = ("current_user",)
            token_auth = TokenAuth(secret=SECRET, claims=CLAIMS)


def test_verify_says_why_and_keeps_the_token_out_of_the_message() -> None:
    """InvalidToken carries the reason (a TokenProblem) and a detail that quotes no part of the token."""
    auth = TokenAuth(secret=SECRET, claims=CLAIMS)
    expired = token_for(expires_in=-60)
    with pytest.raises(InvalidToken) as caught:
        auth.verify(expired)
    assert caught.value.reason is TokenProblem.EXPIRED
    assert not any(part in str(caught.value) for part in expired.split("."))
    assert auth.verify(token_for("alice"))["sub"] == "alice"


@settings(max_examples=300, deadline=None)
@given(
    token=st.text(st.characters(), max_size=200)
    | st.lists(st.text("ABCDEFabcdef0123456789-_=+/", max_size=40), max_size=5).map(".".join)
)
def test_verify_only_ever_raises_invalid_token(token: str) -> None:
    """Any string, JWT-shaped or not: InvalidToken with a known reason, never another exception."""
    with pytest.raises(InvalidToken) as caught:
        TokenAuth(secret=SECRET, claims=CLAIMS).verify(token)
    assert caught.value.reason in set(TokenProblem)


def test_a_little_clock_skew_is_tolerated() -> None:
    """A backend clock 5 s ahead (iat in the future) passes with the default 10 s leeway; 60 s ahead does not."""
    auth = TokenAuth(secret=SECRET, claims=CLAIMS)
    now = int(time.time())
    ahead = jwt.encode({"sub": "alice", "acct": 7, "iat": now + 5, "exp": now + 300}, SECRET, algorithm="HS256")
    assert auth.verify(ahead)["sub"] == "alice"
    far_ahead = jwt.encode({"sub": "alice", "acct": 7, "iat": now + 60, "exp": now + 300}, SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken) as caught:
        auth.verify(far_ahead)
    assert caught.value.reason is TokenProblem.NOT_YET_VALID
