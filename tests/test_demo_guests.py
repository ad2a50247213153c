"""The demo's guest identity: a server-issued id in a signed, HttpOnly cookie; ``?name=`` only a display name.

The demo used to identify a browser by ``?name=``, which every access-log line wrote out: whoever
read the log (or guessed the Vue chat's 32 random bits) read and reset that user's conversation.
Pure checks of :class:`~cable_server.demo.GuestPass`, then the demo app on a real server over raw
sockets and as ``cable-server`` runs it; the browser's side is in ``test_browser_chat.py``.
"""

from __future__ import annotations

import itertools
import logging
import re
import sys

import httpx
import pytest

from cable_server import Settings
from cable_server.channels import GptChatChannel
from cable_server.demo import GuestChatChannel, GuestPass, create_app
from cable_server.demo.guests import COOKIE
from cable_server.llm import ChatSettings
from cable_server.testing import FakeOpenAI, RedisServer
from protocol_tests.client import CableClient

from .chat_helpers import read_answer, room, transcript
from .conftest import RunningServer, ServerFactory
from .processes import Launcher

COOKIE_VALUE = re.compile(r"[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}")
QUESTION = "alice's private question"
#: ``cable-server`` as this checkout's module (the console script runs whichever checkout is installed).
CABLE_SERVER = (sys.executable, "-m", "cable_server")
_PREFIXES = itertools.count()


async def start_demo(serve: ServerFactory, fake: FakeOpenAI, guests: GuestPass | None = None) -> RunningServer:
    cable = create_app(ChatSettings(api_key="sk-test", base_url=fake.url, max_retries=0), guests=guests)
    cable.settings = Settings(shutdown_timeout=1.0)
    return await serve(cable)


def issued(client: CableClient) -> str | None:
    """The ``Set-Cookie`` of the client's handshake response, if any."""
    value: str | None = client.ws.response.headers.get("set-cookie") if client.ws.response else None
    return value


def sent_back(set_cookie: str) -> str:
    """The ``Cookie`` header a browser sends back for ``set_cookie``: its ``name=value``."""
    return set_cookie.split(";", 1)[0]


def guest_of(server: RunningServer, client_count: int = 1) -> list[str]:
    """The identifiers of the server's open connections (``""``: anonymous), oldest first."""
    statistics = sorted(server.cable.open_connections_statistics(), key=lambda s: s.started_at)
    assert len(statistics) >= client_count
    return [s.identifier for s in statistics]


# --- the pass, without a socket ---------------------------------------------------------------


def test_a_guest_pass_verifies_only_what_its_own_secret_signed() -> None:
    """A cookie value is the guest's only when this secret signed that very id: tampered, re-signed
    with another secret, spliced from two guests, truncated or padded values are nobody's."""
    guests, other = GuestPass("one secret, long enough for the demo's own tests"), GuestPass(b"another")
    guest, value = guests.issue()
    assert COOKIE_VALUE.fullmatch(value) and value.startswith(guest + ".")
    assert guests.verify(value) == guest
    assert other.verify(value) is None
    assert guests.issue()[0] != guest  # random, never a counter
    second, second_value = guests.issue()
    mac = value.partition(".")[2]
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    for forged in (
        None,
        "",
        guest,
        f"{guest}.{flipped}",
        f"{second}.{mac}",  # another guest's id with this one's signature
        f"{guest}.{second_value.partition('.')[2]}",
        other.issue()[1],
        value[:-1],
        value + "A",
        f"{value}.{mac}",
        f"{guest}={mac}",
        value.replace(guest[0], "é", 1),
    ):
        assert guests.verify(forged) is None, forged


def test_a_guest_pass_admits_named_clients_only() -> None:
    """No name: anonymous whatever the cookie. A name: the valid cookie's guest, else a new guest
    whose cookie is HttpOnly, SameSite=Lax, for every path, 30 days, Secure over TLS only."""
    guests = GuestPass("one secret, long enough for the demo's own tests")
    guest, value = guests.issue()
    assert guests.admit({COOKIE: value}, named=False, scheme="ws").guest is None
    assert guests.admit({COOKIE: value}, named=True, scheme="ws").guest == guest
    assert guests.admit({COOKIE: value}, named=True, scheme="ws").set_cookie is None
    fresh = guests.admit({COOKIE: value + "x"}, named=True, scheme="ws")
    assert fresh.guest not in (None, guest) and fresh.set_cookie is not None
    name_value, *attributes = fresh.set_cookie.split("; ")
    assert name_value == f"{COOKIE}={name_value.partition('=')[2]}"
    assert guests.verify(name_value.partition("=")[2]) == fresh.guest
    assert attributes == ["Max-Age=2592000", "Path=/", "HttpOnly", "SameSite=Lax"]
    for scheme in ("wss", "https"):
        secure = guests.admit({}, named=True, scheme=scheme).set_cookie
        assert secure is not None and secure.endswith("; SameSite=Lax; Secure")


# --- the demo app on a real server --------------------------------------------------------------


async def test_a_named_client_is_given_a_guest_cookie_on_the_handshake(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """?name= without a cookie: the 101 sets an HttpOnly, SameSite=Lax guest cookie (no Secure over
    ws://) and the connection is that guest; sent back, the cookie is the same guest and no new one
    is set. A client naming nothing (the blog's) gets no cookie and is anonymous; pages set none."""
    server = await start_demo(serve, fake_openai)
    alice = await server.client("?name=alice")
    set_cookie = issued(alice)
    assert set_cookie is not None
    name_value, *attributes = set_cookie.split("; ")
    assert attributes == ["Max-Age=2592000", "Path=/", "HttpOnly", "SameSite=Lax"]
    name, _, value = name_value.partition("=")
    assert name == COOKIE and COOKIE_VALUE.fullmatch(value)
    guest = value.partition(".")[0]
    assert guest_of(server) == [guest]

    again = await server.client("?name=Alice%20again", headers={"Cookie": f"theme=dark; {name_value}"})
    assert issued(again) is None
    blog = await server.client()
    assert issued(blog) is None
    assert guest_of(server, 3) == [guest, guest, ""]
    async with httpx.AsyncClient() as http:
        for path in ("/", "/plain"):
            page = await http.get(server.http_url + path)
            assert page.status_code == 200 and "set-cookie" not in page.headers, path


async def test_a_guests_rooms_are_reached_with_its_cookie_only(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Alice's cookie, in another tab under another name, finds her conversation. ?name=alice alone,
    a forged, tampered or other-secret cookie, and anonymous clients (alice's cookie included) name
    room "alice" and find an empty one; their reset leaves hers as it was."""
    server = await start_demo(serve, fake_openai)
    alice = await server.client("?name=alice")
    set_cookie = issued(alice)
    assert set_cookie is not None
    cookie = sent_back(set_cookie)
    value = cookie.partition("=")[2]
    guest, _, mac = value.partition(".")
    await alice.subscribe(room("alice"))
    await alice.perform(room("alice"), "send_message", user_content=QUESTION, user_id="alice")
    assert (await read_answer(alice, room("alice"))).last["event"] == "done"

    tab = await server.client("?name=someone-else", headers={"Cookie": cookie})
    await tab.subscribe(room("alice"))
    await tab.perform(room("alice"), "history")
    assert transcript((await tab.recv())["message"])[0] == {"role": "user", "content": QUESTION}

    intruders = {
        "?name=alice, no cookie": ("?name=alice", None),
        "anonymous": ("", None),
        "anonymous with alice's cookie": ("", cookie),
        "tampered signature": ("?name=alice", f"{COOKIE}={guest}.{mac[::-1]}"),
        "another guest's id": ("?name=alice", f"{COOKIE}={GuestPass(b'x').issue()[0]}.{mac}"),
        "another secret": ("?name=alice", f"{COOKIE}={GuestPass(b'not the server secret').issue()[1]}"),
        "the guest id alone": ("?name=alice", f"{COOKIE}={guest}"),
    }
    for what, (query, header) in intruders.items():
        intruder = await server.client(query, headers={"Cookie": header} if header else None)
        new_cookie = issued(intruder)
        assert (new_cookie is not None) == bool(query), what  # a named client without a valid cookie gets a new guest
        assert new_cookie is None or guest not in new_cookie, what
        await intruder.subscribe(room("alice"))
        await intruder.perform(room("alice"), "history")
        assert transcript((await intruder.recv())["message"]) == [], what
        await intruder.perform(room("alice"), "reset")
        assert (await intruder.recv())["message"]["event"] == "reset", what
        await intruder.close()
    await alice.expect_silence(0.2)
    await alice.perform(room("alice"), "history")
    assert transcript((await alice.recv())["message"])[0] == {"role": "user", "content": QUESTION}


async def test_the_cookie_never_reaches_the_log(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Every record of the server, uvicorn's request lines and websockets' header lines included, at
    DEBUG: the guest id may be there (worth nothing unsigned); the cookie's signature never is, nor
    a Cookie or Set-Cookie value."""
    server = await start_demo(serve, fake_openai)
    caplog.set_level(logging.DEBUG)
    for name in ("uvicorn.error", "uvicorn.access", "cable_server"):
        caplog.set_level(logging.DEBUG, logger=name)
    alice = await server.client("?name=alice")
    set_cookie = issued(alice)
    assert set_cookie is not None
    cookie = sent_back(set_cookie)
    guest, _, mac = cookie.partition("=")[2].partition(".")
    again = await server.client("?name=alice", headers={"Cookie": cookie})
    await again.subscribe(room("alice"))
    await again.send({"command": "subscribe", "identifier": "not json"})
    async with httpx.AsyncClient() as http:
        await http.get(server.http_url + "/", headers={"Cookie": cookie})
    await again.expect_silence(0.2)
    await alice.close()
    await again.close()
    await server.stop()
    clients = ("websockets.client", "httpx", "httpcore")  # this test's own clients log what they send
    records = [record for record in caplog.records if not record.name.startswith(clients)]
    lines = [f"{record.name} {record.getMessage()} {record.__dict__}" for record in records]
    assert any('"WebSocket /cable?name=alice" [accepted]' in line for line in lines)  # the request lines were captured
    assert any(guest in line for line in lines)
    assert any("> set-cookie: [FILTERED]" in line for line in lines)  # the header line is there, redacted
    assert not [line for line in lines if mac in line]


async def test_a_cookie_issued_over_tls_is_secure(launch: Launcher) -> None:
    """`cable-server --ssl-certfile` (the demo, offline model): the guest cookie of a wss:// handshake is Secure."""
    server = await launch(tls=True, command=CABLE_SERVER)
    client = await server.client("/cable?name=alice")
    set_cookie = issued(client)
    assert set_cookie is not None and set_cookie.endswith("; HttpOnly; SameSite=Lax; Secure")


async def test_the_workers_of_cable_server_share_the_guest_secret(launch: Launcher, redis_server: RedisServer) -> None:
    """`cable-server --workers 2` with no CABLE_DEMO_SECRET: a cookie one worker issued is the same guest on
    every connection, whichever worker takes it (twelve: all on one worker 1 time in 2,048)."""
    prefix = f"guests{next(_PREFIXES)}"
    server = await launch("--workers", "2", "--pubsub", redis_server.url, "--channel-prefix", prefix, command=CABLE_SERVER)
    await server.healthy()
    first = await server.client("/cable?name=alice")
    set_cookie = issued(first)
    assert set_cookie is not None
    url = f"ws://127.0.0.1:{server.port}/cable?name=alice"
    for _ in range(12):
        client = await CableClient.connect(url, origin=server.origin, headers={"Cookie": sent_back(set_cookie)})
        assert issued(client) is None  # a worker with another secret would have issued a new guest
        await client.close()


async def test_cable_demo_secret_keeps_guests_across_restarts(
    serve: ServerFactory, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With CABLE_DEMO_SECRET, a cookie outlives the server that issued it; without, each server has
    its own secret and a restart gives the browser a new guest."""
    monkeypatch.setenv("CABLE_DEMO_SECRET", "a secret that the operator keeps across restarts")
    first = await start_demo(serve, fake_openai)
    set_cookie = issued(await first.client("?name=alice"))
    assert set_cookie is not None
    await first.stop()
    restarted = await start_demo(serve, fake_openai)
    assert issued(await restarted.client("?name=alice", headers={"Cookie": sent_back(set_cookie)})) is None
    monkeypatch.delenv("CABLE_DEMO_SECRET")
    unconfigured = [await start_demo(serve, fake_openai) for _ in range(2)]
    set_cookie = issued(await unconfigured[0].client("?name=alice"))
    assert set_cookie is not None
    for server in unconfigured:
        client = await server.client("?name=alice", headers={"Cookie": sent_back(set_cookie)})
        assert (issued(client) is None) == (server is unconfigured[0])


def test_the_room_hook_is_not_an_action_a_client_can_call() -> None:
    """``user_room`` is public to be overridden; called by a client, each call logged a traceback."""
    assert "user_room" not in GptChatChannel._actions and "user_room" not in GuestChatChannel._actions
    assert {"send_message", "stop", "resume", "history", "reset"} <= set(GuestChatChannel._actions)
