"""Rails' Origin check (protocol.md §2.3) as a pure function, and parsing of configured origins."""

from __future__ import annotations

import re

import pytest

from cable_server.config import Settings, parse_origins
from cable_server.handshake import origin_allowed

DEFAULT = Settings()
DEV_LOCALHOST = Settings(allowed_origins=(re.compile(r"https?://localhost:\d+"),))


def headers(origin: str | None = None, host: str | None = "example.com") -> dict[str, str]:
    """Request headers as the ASGI layer gives them: lower-case names."""
    result: dict[str, str] = {}
    if origin is not None:
        result["origin"] = origin
    if host is not None:
        result["host"] = host
    return result


# --- same origin --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "origin"),
    [
        ("ws", "http://example.com"),
        ("http", "http://example.com"),
        ("wss", "https://example.com"),
        ("https", "https://example.com"),
    ],
)
def test_same_origin_allowed(scheme: str, origin: str) -> None:
    """``Origin == "#{proto}://#{Host}"`` is allowed, with proto https for wss/https and http otherwise."""
    assert origin_allowed(DEFAULT, headers(origin), scheme)


@pytest.mark.parametrize(
    ("scheme", "origin"),
    [
        ("ws", "https://example.com"),
        ("wss", "http://example.com"),
        ("http", "https://example.com"),
        ("https", "http://example.com"),
    ],
)
def test_same_origin_requires_matching_scheme(scheme: str, origin: str) -> None:
    """The origin's scheme must match the request's: http for ws/http, https for wss/https."""
    assert not origin_allowed(DEFAULT, headers(origin), scheme)


def test_same_origin_includes_host_port() -> None:
    """The Host header's port is part of the comparison (``HTTP_HOST`` includes it)."""
    assert origin_allowed(DEFAULT, headers("http://127.0.0.1:8080", host="127.0.0.1:8080"), "ws")
    assert not origin_allowed(DEFAULT, headers("http://127.0.0.1:9090", host="127.0.0.1:8080"), "ws")
    assert not origin_allowed(DEFAULT, headers("http://127.0.0.1", host="127.0.0.1:8080"), "ws")
    assert not origin_allowed(DEFAULT, headers("http://127.0.0.1:8080", host="127.0.0.1"), "ws")


@pytest.mark.parametrize(
    "origin",
    [
        "http://evil.example",
        "http://example.com.evil.example",
        "http://sub.example.com",
        "http://example.com/",
        "HTTP://EXAMPLE.COM",
        "null",
        "",
    ],
)
def test_other_origins_refused_by_default(origin: str) -> None:
    """With the default settings, anything but the exact same origin is refused (case 7)."""
    assert not origin_allowed(DEFAULT, headers(origin), "ws")


def test_missing_origin_refused() -> None:
    """A request without an Origin header is refused under the default config (case 8)."""
    assert not origin_allowed(DEFAULT, headers(None), "ws")
    assert not origin_allowed(DEFAULT, headers(None, host=None), "ws")
    assert not origin_allowed(Settings(allowed_origins=("http://example.com",)), headers(None), "ws")


def test_missing_host_is_not_same_origin() -> None:
    """Without a Host header there is no same origin to match."""
    assert not origin_allowed(DEFAULT, headers("http://example.com", host=None), "ws")


def test_same_origin_can_be_disabled() -> None:
    """With ``allow_same_origin_as_host=False`` the same origin is refused unless listed."""
    settings = Settings(allow_same_origin_as_host=False)
    assert not origin_allowed(settings, headers("http://example.com"), "ws")
    assert not origin_allowed(settings, headers("https://example.com"), "wss")
    listed = Settings(allow_same_origin_as_host=False, allowed_origins=("http://example.com",))
    assert origin_allowed(listed, headers("http://example.com"), "ws")


# --- configured origins ---------------------------------------------------------------------------


def test_configured_exact_strings() -> None:
    """Configured strings allow exactly that origin: no prefix, suffix or case folding."""
    settings = Settings(allowed_origins=("https://app.example", "http://localhost:3000"))
    assert origin_allowed(settings, headers("https://app.example"), "ws")
    assert origin_allowed(settings, headers("http://localhost:3000"), "ws")
    assert not origin_allowed(settings, headers("https://app.example.evil"), "ws")
    assert not origin_allowed(settings, headers("https://app.exampl"), "ws")
    assert not origin_allowed(settings, headers("HTTPS://APP.EXAMPLE"), "ws")
    assert not origin_allowed(settings, headers("http://localhost:30000"), "ws")


def test_configured_origin_independent_of_host_and_scheme() -> None:
    """A listed origin is allowed whatever the Host header and request scheme are."""
    settings = Settings(allowed_origins=("https://app.example",))
    assert origin_allowed(settings, headers("https://app.example", host="cable.example:8443"), "ws")
    assert origin_allowed(settings, headers("https://app.example", host=None), "wss")


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:3000", True),
        ("https://localhost:8443", True),
        ("http://localhost:3000.evil.com", False),
        ("http://evil.com/http://localhost:3000", False),
        ("xhttp://localhost:3000", False),
        ("http://localhost:", False),
        ("http://localhost", False),
        ("ftp://localhost:21", False),
    ],
)
def test_configured_patterns_must_match_fully(origin: str, allowed: bool) -> None:
    """A compiled pattern allows an origin only if it matches the whole origin (re.fullmatch)."""
    assert origin_allowed(DEV_LOCALHOST, headers(origin, host="cable.internal"), "ws") is allowed


def test_strings_and_patterns_mix() -> None:
    """Any one matching rule, string or pattern, is enough."""
    settings = Settings(allowed_origins=("https://app.example", re.compile(r"https://[a-z]+\.example\.org")))
    assert origin_allowed(settings, headers("https://app.example"), "ws")
    assert origin_allowed(settings, headers("https://shop.example.org"), "ws")
    assert not origin_allowed(settings, headers("https://shop.example.org.evil"), "ws")


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "", None])
def test_disabled_check_allows_anything(origin: str | None) -> None:
    """``disable_origin_check`` allows every origin, a missing one included (forgery protection off)."""
    settings = Settings(disable_origin_check=True, allow_same_origin_as_host=False)
    assert origin_allowed(settings, headers(origin, host=None), "ws")


# --- parse_origins -----------------------------------------------------------------------------------


def test_parse_origins_exact_strings() -> None:
    """Plain values stay exact strings, in order."""
    assert parse_origins(["https://app.example", "http://localhost:3000"]) == ("https://app.example", "http://localhost:3000")


def test_parse_origins_slash_delimited_is_pattern() -> None:
    """``/regex/`` becomes a compiled pattern of what is between the slashes."""
    (rule,) = parse_origins([r"/https?://localhost:\d+/"])
    assert isinstance(rule, re.Pattern)
    assert rule.pattern == r"https?://localhost:\d+"


def test_parse_origins_drops_blanks_and_strips() -> None:
    """Empty and whitespace-only values are dropped; surrounding whitespace is stripped."""
    assert parse_origins(["", "   ", " https://app.example ", "\t"]) == ("https://app.example",)
    assert parse_origins([]) == ()


def test_parse_origins_lone_slash_is_a_string() -> None:
    """A single ``/`` is not a pattern delimiter pair: it stays an exact string."""
    assert parse_origins(["/"]) == ("/",)


def test_parse_origins_mixed_then_used_by_origin_allowed() -> None:
    """Parsed rules plug into Settings: strings match exactly, patterns fully."""
    rules = parse_origins(["https://app.example", r"/https?://localhost:\d+/", " "])
    assert len(rules) == 2
    assert rules[0] == "https://app.example"
    assert isinstance(rules[1], re.Pattern)
    settings = Settings(allowed_origins=rules)
    assert origin_allowed(settings, headers("https://app.example"), "ws")
    assert origin_allowed(settings, headers("http://localhost:5173"), "ws")
    assert not origin_allowed(settings, headers("http://localhost:5173.evil.com"), "ws")
