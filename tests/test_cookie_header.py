"""Connection.cookies parses the Cookie header exactly as Rack does (Rails' ``cookies[...]``), checked
against Rack itself (Debian's ruby-rack, Rack::Utils.parse_cookies_header) on headers where Starlette's
parsing answers otherwise, and over a real connection."""

from __future__ import annotations

import json
import subprocess

from cable_server import CableServer, Channel, Connection
from cable_server.cookies import parse_cookie_header
from protocol_tests.client import ident

from .conftest import ServerFactory

HEADERS = [
    "a=1; a=2",  # the first wins (the browser sends the most specific path first)
    'q="quoted value"; plain=x',  # quotes are kept
    "sig=eyJh%3D%3D--9f%2B%2F; sp=a+b",  # %-escapes and + decoded (Rails writes values escaped)
    "euro=%E2%82%AC; stray=100%; bad=%zz1",  # a % that starts no escape leaves the value as it is
    "flag; a=1; flag=2",  # no '=': nil, and still the first
    ";;a=1;    b=2;c=3 ; d=4;",  # empty pieces, spaces after ';' only
    " lead=1; x=a=b=c; =empty-name; e=",
    "a=b,c=d; comma=1,2",  # a comma is not a separator
    "%41=1; A=2",  # names are not unescaped
]


def rack_parse(headers: list[str]) -> list[dict[str, str | None]]:
    script = (
        'require "rack"; require "json"; '
        "puts JSON.generate(JSON.parse($stdin.read).map { |h| Rack::Utils.parse_cookies_header(h) })"
    )
    out = subprocess.run(["ruby", "-e", script], input=json.dumps(headers), capture_output=True, text=True, check=True)
    parsed: list[dict[str, str | None]] = json.loads(out.stdout)
    return parsed


def test_parsed_as_rack_parses() -> None:
    assert [parse_cookie_header(header) for header in HEADERS] == rack_parse(HEADERS)


def test_what_rack_gives_differs_from_starlettes_parsing() -> None:
    """The cases that matter for a Rails port: escaped base64, the first duplicate, quotes."""
    assert parse_cookie_header("a=1; a=2") == {"a": "1"}
    assert parse_cookie_header("sig=eyJh%3D%3D--9f%2B%2F") == {"sig": "eyJh==--9f+/"}
    assert parse_cookie_header('q="v"') == {"q": '"v"'}
    assert parse_cookie_header("bytes=%FF%FE") == {"bytes": "\ufffd\ufffd"}  # not UTF-8: replaced
    assert parse_cookie_header("a=1", "b=2; a=3") == {"a": "1", "b": "2"}  # several headers read as one


class CookiesChannel(Channel):
    def subscribed(self) -> None:
        self.transmit(dict(self.connection.cookies))


async def test_a_connection_reads_its_cookies_rack_style(serve: ServerFactory) -> None:
    """``self.cookies`` in a Connection (and ``self.connection.cookies`` in a channel): decoded, first wins."""
    server = await serve(CableServer(connection_class=Connection, channels=[CookiesChannel]))
    client = await server.client(headers={"Cookie": 'user=al%20ice; user=mallory; q="x"'})
    await client.send({"command": "subscribe", "identifier": ident("CookiesChannel")})
    assert (await client.recv())["message"] == {"user": "al ice", "q": '"x"'}
