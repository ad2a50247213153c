"""The ``Cookie`` request header, parsed as Rack parses it (what ``cookies[...]`` reads in Rails).

Starlette's ``request.cookies`` follows the browser-side cookie grammar: it strips double quotes,
keeps the *last* of two cookies with one name and leaves ``%``-escapes as they are. Rack (2.2 and
3.x alike, ``Rack::Utils.parse_cookies_header``) does otherwise, and Rails apps depend on it: Rails
writes cookie values ``%``-escaped (a signed cookie's base64 ``=`` travels as ``%3D``), and a
browser sends the cookie of the most specific path first, which Rack keeps. So a port of a Rails
connection reads :attr:`cable_server.Connection.cookies`, which this module fills:

- the header is split on ``;`` followed by any number of spaces; empty pieces are skipped;
- each piece is split at its first ``=``; the name is kept as it is (not unescaped, not trimmed);
- the value is form-decoded (``%XX`` -> the byte, ``+`` -> space), or kept as it is when it holds a
  ``%`` that starts no escape; double quotes are kept;
- the first cookie of a name wins; a piece without ``=`` gives its name the value ``None``.

Decoded bytes that are not UTF-8 become U+FFFD (Ruby keeps them as a string of invalid encoding;
Python has no such string).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus

if TYPE_CHECKING:
    from starlette.requests import HTTPConnection

__all__ = ["parse_cookie_header", "request_cookies"]

_SEPARATOR = re.compile(r"; *")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _unescape(value: str) -> str:
    """``URI.decode_www_form_component``, or the value untouched where Ruby's would raise."""
    if _STRAY_PERCENT.search(value):
        return value
    return unquote_plus(value, errors="replace")


def parse_cookie_header(*headers: str) -> dict[str, str | None]:
    """Name -> value of every cookie in ``headers`` (several ``Cookie`` headers are read as one)."""
    cookies: dict[str, str | None] = {}
    for piece in _SEPARATOR.split("; ".join(headers)):
        if not piece:
            continue
        name, equals, value = piece.partition("=")
        if name not in cookies:
            cookies[name] = _unescape(value) if equals else None
    return cookies


def request_cookies(request: HTTPConnection) -> dict[str, str | None]:
    """The cookies of ``request`` (a Starlette ``Request`` or ``WebSocket``), parsed as Rack does."""
    return parse_cookie_header(*request.headers.getlist("cookie"))
