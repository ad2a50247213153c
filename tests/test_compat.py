"""The fast path runs only on the uvicorn and ``websockets`` it was verified against; on any
other release the server serves through uvicorn's own protocols, with one warning.

The check itself is tried on classes written here (each lacking one thing a release could take
away) and on the installed releases; the fallback on a real server, whose dependencies are told
to be other releases (their ``__version__``, which is what the check reads).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tomllib
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
import websockets
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from cable_server import compat
from cable_server.compat import VERIFIED, Difference, Internal, differences, missing, release, release_differences
from cable_server.uvicorn_http import guarded_protocol
from cable_server.uvicorn_ws import CableWebSocketProtocol
from protocol_tests.client import ident

from .conftest import ServerFactory

ROOT = Path(__file__).resolve().parent.parent
ECHO = ident("EchoChannel", room="compat")

SHAPE = Internal(
    "dependency",
    "dependency:Verified",
    methods={"parse": ("self",), "handle": ("self", "event")},
    attributes=frozenset({"conn"}),
    generators=frozenset({"parse"}),
    hands_over=frozenset({"parse"}),
    calls={"queue": frozenset({"get", "put_nowait"})},
)


class Base:
    def parse(self) -> Generator[None]:
        yield


class Verified(Base):
    """Everything ``SHAPE`` asks for."""

    def __init__(self) -> None:
        self.conn = None
        self.queue: Any = None

    def parse(self) -> Generator[None]:
        yield from super().parse()

    def handle(self, event: object, more: int = 0) -> None:
        self.queue.put_nowait(event)


class NoMethod(Verified):
    handle = None  # type: ignore[assignment]


class OtherParameters(Verified):
    def handle(self, event: object, more: int = 0, *, required: int) -> None:  # type: ignore[override]
        pass


class NotAGenerator(Verified):
    def parse(self) -> None:  # type: ignore[override]
        pass


class OwnParse(Base):
    def __init__(self) -> None:
        self.conn = None

    def parse(self) -> Generator[None]:
        yield

    def handle(self, event: object) -> None:
        pass


class NoConn(Base):
    def parse(self) -> Generator[None]:
        yield from super().parse()

    def handle(self, event: object) -> None:
        pass


class OtherQueueCall(Verified):
    def flush(self) -> None:
        while self.queue.qsize():
            self.queue.get_nowait()


class NextWebSocketsSansIO(WebSocketsSansIOProtocol):
    """uvicorn's class as a release could change it: its queue asked for something ours lacks."""

    def pending(self) -> int:
        return self.queue.qsize()


def test_a_class_with_every_internal_has_no_difference() -> None:
    assert differences(SHAPE, Verified) == []


@pytest.mark.parametrize(
    ("cls", "difference"),
    [
        (NoMethod, "NoMethod has no method handle"),
        (OtherParameters, "OtherParameters handle does not take (self, event)"),
        (NotAGenerator, "NotAGenerator parse is not a generator"),
        (OwnParse, "OwnParse parse does not hand over to the parent's parse"),
        (NoConn, "NoConn does not set self.conn"),
        (OtherQueueCall, "OtherQueueCall calls self.queue.get_nowait, which ours has not"),
    ],
)
def test_each_missing_internal_is_named(cls: type, difference: str) -> None:
    """Each thing the fast path uses, taken away, is found and named (with the package)."""
    found = differences(SHAPE, cls)
    assert Difference("dependency", difference) in found
    assert all(d.package == "dependency" for d in found)


@pytest.mark.parametrize("cls", [int, type("Dynamic", (Verified,), {})])
def test_a_class_without_source_cannot_be_verified(cls: type) -> None:
    assert differences(SHAPE, cls) == [Difference("dependency", f"{cls.__qualname__} has no source to check")]


def test_a_class_that_cannot_be_imported_is_named_and_an_optional_one_absent_is_not_checked() -> None:
    moved = Internal("dependency", "no_such_module:Verified", methods={})
    gone = Internal("dependency", "json:Verified", methods={})
    optional = Internal("dependency", "no_such_module:Verified", methods={}, optional_on="no_such_module")
    assert [d.what for d in missing((moved, gone, optional))] == [
        "cannot import no_such_module (No module named 'no_such_module')",
        "json has no class Verified",
    ]


def test_the_package_imports_without_the_private_modules_it_checks() -> None:
    """So that an upgrade that moved them cannot break ``import cable_server``: the check runs first."""
    code = "import sys, cable_server, cable_server.session; print(sorted(m for m in sys.modules if m.startswith(%r)))"
    for prefix in ("uvicorn.protocols", "cable_server.uvicorn_", "websockets"):
        done = subprocess.run([sys.executable, "-c", code % prefix], capture_output=True, text=True, check=True, cwd=ROOT)
        assert done.stdout.strip() == "[]"


def test_the_uvicorn_internals_catch_a_new_call_on_the_replaced_queue() -> None:
    """The real table against uvicorn's real class, changed as a release could change it."""
    uvicorn_ws = compat.WEBSOCKET_INTERNALS[0]
    assert differences(uvicorn_ws, WebSocketsSansIOProtocol) == []
    assert differences(uvicorn_ws, NextWebSocketsSansIO) == [
        Difference("uvicorn", "NextWebSocketsSansIO calls self.queue.qsize, which ours has not")
    ]


@pytest.mark.parametrize(
    ("version", "number"),
    [("0.54.0", (0, 54, 0)), ("17", (17,)), ("17.0.1", (17, 0, 1)), ("0.55.0rc1", None), ("17.4+deb", None), ("", None)],
)
def test_only_dotted_numbers_are_releases(version: str, number: tuple[int, ...] | None) -> None:
    assert release(version) == number


@pytest.mark.parametrize(
    ("package", "version", "verified"),
    [
        ("uvicorn", "0.54.0", True),
        ("uvicorn", "0.54.3", True),
        ("uvicorn", "0.53.0", False),
        ("uvicorn", "0.55.0", False),
        ("websockets", "17.0", True),
        ("websockets", "17.4.1", True),
        ("websockets", "17.5", False),
        ("websockets", "18.0", False),
        ("websockets", "17.5rc1", False),
        ("websockets", None, False),
    ],
)
def test_releases_are_verified_by_range(package: str, version: str | None, verified: bool) -> None:
    assert (release_differences(package, version) == []) is verified


def test_pyproject_bounds_the_dependencies_to_the_verified_releases() -> None:
    """pip refuses what the startup check would refuse: the two say the same."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for package, (low, high) in VERIFIED.items():
        bounds = f"{package}>={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"
        assert bounds in dependencies


def test_the_installed_releases_run_the_fast_path() -> None:
    selection = compat.select_protocols(1024, 1.0)
    assert selection.differences == ()
    assert selection.ws is CableWebSocketProtocol
    assert isinstance(selection.http, type)
    assert selection.http.__name__ == guarded_protocol(1024, 1.0).__name__  # httptools' or h11's, guarded


@pytest.mark.parametrize(
    ("module", "version", "ws", "http_guarded"),
    [(uvicorn, "0.55.0", "websockets-sansio", False), (websockets, "18.0", "websockets-sansio", True)],
)
async def test_an_unverified_release_is_served_through_asgi_with_one_warning(
    serve: ServerFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    version: str,
    ws: str,
    http_guarded: bool,
) -> None:
    """Welcome, subscribe and broadcast work on uvicorn's own protocols; one warning names the release."""
    monkeypatch.setattr(module, "__version__", version)
    caplog.set_level(logging.WARNING, logger="cable_server.compat")
    server = await serve()
    assert server.uvicorn.config.ws == ws
    http = server.uvicorn.config.http
    assert (http != "h11") is http_guarded
    assert http_guarded or server.uvicorn.config.http_protocol_class is H11Protocol
    alice, bob = await server.client("?user=alice"), await server.client("?user=bob")
    for client in (alice, bob):
        await client.subscribe(ECHO)
    await alice.perform(ECHO, "shout", payload={"n": 1})
    for client in (alice, bob):
        assert (await client.recv())["message"] == {"n": 1}
        await client.close()
    warnings = [record.getMessage() for record in caplog.records if record.name == "cable_server.compat"]
    assert len(warnings) == 1
    assert f"{module.__name__}: {version} is not a verified release" in warnings[0]
