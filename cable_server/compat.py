"""Whether the uvicorn and ``websockets`` installed are what the fast path was verified against.

The direct-write fast path (:mod:`cable_server.uvicorn_ws`) subclasses uvicorn's sans-I/O
WebSocket protocol, replaces two of its attributes with lighter objects and swaps
``websockets``' parser generator; the request-head guard (:mod:`cable_server.uvicorn_http`)
overrides uvicorn's HTTP protocols' parser callbacks. None of that is public API: any release
may rename it, and the failure would come at import or, worse, on every connection.
``pyproject.toml`` bounds both packages to the releases verified (:data:`VERIFIED`); this module
is the run-time half, for an environment that has other releases anyway (a ``--no-deps``
install, a lock file, a distribution's package, a patch release within the bounds).

:func:`select_protocols`, called once as the server is configured, checks that each release is
in :data:`VERIFIED` and that each private class still has what our subclasses use
(:data:`WEBSOCKET_INTERNALS`, :data:`HTTP_INTERNALS`). When anything differs it logs one warning
naming it, and the server runs on uvicorn's own protocols instead: WebSockets through ASGI
``send`` (the same frames, at ~33 rather than ~13 µs of CPU per delivered message) and HTTP
through h11 (request heads bounded in bytes by h11, but not in time). Nothing is patched and
nothing is guessed: what was not verified is not used.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import importlib
import importlib.util
import inspect
import logging
import re
import sys
import tokenize
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import uvicorn.config

from .limits import FrameLimit, IncompleteLimit

__all__ = [
    "HTTP_INTERNALS",
    "VERIFIED",
    "WEBSOCKET_INTERNALS",
    "Difference",
    "Internal",
    "Selection",
    "differences",
    "missing",
    "release",
    "release_differences",
    "select_protocols",
]

logger = logging.getLogger("cable_server.compat")

Release = tuple[int, ...]

#: Per package, the releases verified: from (inclusive), to (exclusive). ``pyproject.toml``
#: has the same bounds; raising one is a decision: run the suite (and ``scripts/newest_releases``)
#: on the new release first.
VERIFIED: Final[Mapping[str, tuple[Release, Release]]] = {
    "uvicorn": ((0, 54), (0, 55)),
    "websockets": ((17, 0), (17, 5)),
}

#: uvicorn's own protocols, served when ours cannot be (h11: its byte cap bounds request heads).
FALLBACK_WS: Final = "websockets-sansio"
FALLBACK_HTTP: Final = "h11"


@dataclass(frozen=True, slots=True)
class Difference:
    """One way the installed dependencies are not what was verified: whose, and what."""

    package: str
    what: str

    def __str__(self) -> str:
        return f"{self.package}: {self.what}"


@dataclass(frozen=True, slots=True)
class Internal:
    """What our code uses of one private class of a dependency, in terms a check can test.

    ``methods``: each method we override or call, with its parameters in order (more are fine
    when they have defaults). ``attributes``: what the class (or a base) assigns on ``self`` and
    we read. ``generators``: methods we drive as generators. ``hands_over``: methods that must
    call the parent's method of the same name (so that, once their own part is done, calling
    the parent's directly is what the class would do). ``calls``: attributes we replace with
    objects of our own, with the only methods the class may call on them (the ones ours have).
    ``optional_on``: a module without which the class is not used, nor checked.
    """

    package: str
    path: str
    methods: Mapping[str, tuple[str, ...]]
    attributes: frozenset[str] = frozenset()
    generators: frozenset[str] = frozenset()
    hands_over: frozenset[str] = frozenset()
    calls: Mapping[str, frozenset[str]] = field(default_factory=dict)
    optional_on: str | None = None


_PROTOCOL_METHODS: Final = {
    "connection_made": ("self", "transport"),
    "connection_lost": ("self", "exc"),
    "data_received": ("self", "data"),
}

#: What :mod:`cable_server.uvicorn_ws` (the fast path) uses.
WEBSOCKET_INTERNALS: Final = (
    Internal(
        "uvicorn",
        "uvicorn.protocols.websockets.websockets_sansio_impl:WebSocketsSansIOProtocol",
        methods={
            "data_received": ("self", "data"),
            "handle_connect": ("self", "event"),
            "send": ("self", "message"),
            "send_receive_event_to_app": ("self",),
            "handle_parser_exception": ("self",),
            "handle_events": ("self",),
            "connection_lost": ("self", "exc"),
        },
        attributes=frozenset(
            {"conn", "transport", "scope", "request", "response", "queue", "writable", "client", "loop", "read_paused"}
            | {"handshake_initiated", "handshake_complete", "close_sent", "disconnected", "curr_msg_data_type", "frames"}
        ),
        calls={"queue": frozenset({"put_nowait", "get", "empty"}), "writable": frozenset({"set", "clear", "is_set", "wait"})},
    ),
    Internal(
        "websockets",
        "websockets.protocol:Protocol",
        methods={"parse": ("self",), "receive_data": ("self", "data"), "events_received": ("self",)},
        attributes=frozenset({"parser", "parser_exc", "events", "reader", "current_size"}),
        generators=frozenset({"parse"}),
    ),
    Internal("websockets", "websockets.streams:StreamReader", methods={"discard": ("self",)}, attributes=frozenset({"buffer"})),
    Internal(
        "websockets",
        "websockets.server:ServerProtocol",
        methods={"parse": ("self",), "accept": ("self", "request")},
        generators=frozenset({"parse"}),
        hands_over=frozenset({"parse"}),
    ),
    Internal("websockets", "websockets.http11:Request", methods={"__init__": ("self", "path", "headers")}),
)

#: What :mod:`cable_server.uvicorn_http` (the request-head guard) uses.
HTTP_INTERNALS: Final = (
    Internal(
        "uvicorn",
        "uvicorn.protocols.http.h11_impl:H11Protocol",
        methods={**_PROTOCOL_METHODS, "on_response_complete": ("self",)},
        attributes=frozenset({"transport", "conn"}),
    ),
    Internal(
        "uvicorn",
        "uvicorn.protocols.http.httptools_impl:HttpToolsProtocol",
        methods={
            **_PROTOCOL_METHODS,
            "on_response_complete": ("self",),
            "on_message_begin": ("self",),
            "on_header": ("self", "name", "value"),
            "on_headers_complete": ("self",),
            "on_message_complete": ("self",),
        },
        attributes=frozenset({"transport", "pipeline"}),
        optional_on="httptools",
    ),
)


def release(version: str) -> Release | None:
    """``"17.0.1"`` -> ``(17, 0, 1)``; ``None`` for anything but dotted numbers (a pre-release,
    a local build): no such version was verified."""
    if re.fullmatch(r"\d+(\.\d+)*", version) is None:
        return None
    return tuple(int(part) for part in version.split("."))


def _bounds(package: str) -> str:
    low, high = VERIFIED[package]
    return f">={'.'.join(map(str, low))},<{'.'.join(map(str, high))}"


def release_differences(package: str, version: str | None) -> list[Difference]:
    """Whether ``version`` of ``package`` is in :data:`VERIFIED`."""
    low, high = VERIFIED[package]
    number = release(version) if version is not None else None
    if number is not None and low <= number < high:
        return []
    return [Difference(package, f"{version or 'an unknown version'} is not a verified release ({_bounds(package)})")]


def differences(internal: Internal, cls: type) -> list[Difference]:
    """What ``cls`` lacks of ``internal``; empty when it has all of it."""
    found: list[Difference] = []

    def lacks(what: str) -> None:
        found.append(Difference(internal.package, f"{cls.__qualname__} {what}"))

    try:
        facts = _facts(cls)
    except (OSError, TypeError, SyntaxError):
        lacks("has no source to check")
        return found
    for name, parameters in internal.methods.items():
        method = getattr(cls, name, None)
        if not callable(method):
            lacks(f"has no method {name}")
        elif not _takes(method, parameters):
            lacks(f"{name} does not take ({', '.join(parameters)})")
        elif name in internal.generators and not inspect.isgeneratorfunction(method):
            lacks(f"{name} is not a generator")
    for name in sorted(internal.hands_over - facts.hands_over):
        lacks(f"{name} does not hand over to the parent's {name}")
    for name in sorted(internal.attributes - facts.assigned):
        lacks(f"does not set self.{name}")
    for attribute, method in sorted(facts.called):
        if attribute in internal.calls and method not in internal.calls[attribute]:
            lacks(f"calls self.{attribute}.{method}, which ours has not")
    return found


def _takes(method: object, parameters: tuple[str, ...]) -> bool:
    try:
        signature = inspect.signature(method)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    present = list(signature.parameters.values())
    names = tuple(parameter.name for parameter in present[: len(parameters)])
    rest = present[len(parameters) :]
    required = [p for p in rest if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    return names == parameters and not required


@dataclass(frozen=True, slots=True)
class _Facts:
    """What the source of a class does with ``self``."""

    #: Assigned on ``self`` anywhere, or declared in a class body.
    assigned: frozenset[str]
    #: ``(attribute, method)`` for each ``self.<attribute>.<method>``.
    called: frozenset[tuple[str, str]]
    #: Methods that call the parent's method of the same name (``super().<name>(...)``).
    hands_over: frozenset[str]


def _facts(cls: type) -> _Facts:
    """The facts of ``cls`` and of its bases outside the standard library, together."""
    bases = [klass for klass in cls.__mro__[1:] if klass.__module__.partition(".")[0] not in sys.stdlib_module_names]
    own = [_own_facts(klass) for klass in (cls, *bases)]
    return _Facts(
        frozenset().union(*(facts.assigned for facts in own)),
        frozenset().union(*(facts.called for facts in own)),
        frozenset().union(*(facts.hands_over for facts in own)),
    )


@functools.cache
def _own_facts(cls: type) -> _Facts:
    """Read once per class: a class's source does not change while the process runs."""
    tree = _class_tree(cls)
    assigned: set[str] = set()
    called: set[tuple[str, str]] = set()
    hands_over: set[str] = set()
    for statement in tree.body:
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            assigned.add(statement.target.id)
        elif isinstance(statement, ast.Assign):
            assigned.update(target.id for target in statement.targets if isinstance(target, ast.Name))
        elif isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef) and _calls_super(statement):
            hands_over.add(statement.name)
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        if _is_self(node.value) and isinstance(node.ctx, ast.Store):
            assigned.add(node.attr)
        elif isinstance(node.value, ast.Attribute) and _is_self(node.value.value):
            called.add((node.value.attr, node.attr))
    return _Facts(frozenset(assigned), frozenset(called), frozenset(hands_over))


def _class_tree(cls: type) -> ast.ClassDef:
    """The definition of ``cls`` in its module's source (``OSError`` when there is none)."""
    filename = inspect.getsourcefile(cls)  # TypeError for a built-in class
    if filename is None:
        raise OSError(f"no source file for {cls.__qualname__}")
    found: ast.ClassDef | ast.Module = _module_tree(filename)
    for name in cls.__qualname__.split("."):
        inner = next((node for node in found.body if isinstance(node, ast.ClassDef) and node.name == name), None)
        if inner is None:
            raise OSError(f"no class {cls.__qualname__} at the top of {filename}")
        found = inner
    assert isinstance(found, ast.ClassDef)
    return found


@functools.cache
def _module_tree(filename: str) -> ast.Module:
    with tokenize.open(filename) as source:
        return ast.parse(source.read(), filename)


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _calls_super(method: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether ``method`` calls ``super().<its own name>(...)``."""
    for node in ast.walk(method):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method.name:
            owner = node.func.value
            if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
                return True
    return False


def _resolve(internal: Internal) -> type | Difference | None:
    """The class at ``internal.path``; ``None`` when it is optional and its module absent."""
    if internal.optional_on is not None and importlib.util.find_spec(internal.optional_on) is None:
        return None
    module_name, _, name = internal.path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return Difference(internal.package, f"cannot import {module_name} ({exc})")
    cls = getattr(module, name, None)
    return cls if isinstance(cls, type) else Difference(internal.package, f"{module_name} has no class {name}")


def missing(internals: tuple[Internal, ...]) -> list[Difference]:
    """What the installed packages lack of ``internals``: a class that cannot be imported, or
    one without what our code uses."""
    found: list[Difference] = []
    for internal in internals:
        cls = _resolve(internal)
        if isinstance(cls, Difference):
            found.append(cls)
        elif cls is not None:
            found.extend(differences(internal, cls))
    return found


def _check(internals: tuple[Internal, ...]) -> list[Difference]:
    """The releases of the packages ``internals`` belong to, then the internals themselves."""
    packages = dict.fromkeys(internal.package for internal in internals)
    return [d for package in packages for d in release_differences(package, _version(package))] + missing(internals)


def _version(package: str) -> str | None:
    """The version of the package as imported (what runs, whatever the metadata says)."""
    version = getattr(importlib.import_module(package), "__version__", None)
    return version if isinstance(version, str) else None


@dataclass(frozen=True, slots=True)
class Selection:
    """The protocols the server runs (classes, or uvicorn's names for its own), and why any
    is uvicorn's own instead of ours (empty when both are ours)."""

    ws: type[asyncio.Protocol] | str
    http: type[asyncio.Protocol] | str
    differences: tuple[Difference, ...]


def select_protocols(
    max_head_bytes: int, head_timeout: float, frame_limit: FrameLimit | None = None, incomplete: IncompleteLimit | None = None
) -> Selection:
    """Our WebSocket and HTTP protocols where what they use was verified, else uvicorn's own;
    logs one warning naming every difference when anything falls back. ``frame_limit``,
    ``incomplete``: what our WebSocket protocol lets a client send, leave incomplete (or defaults)."""
    ws_differences = _check(WEBSOCKET_INTERNALS)
    http_differences = _check(HTTP_INTERNALS)
    ws: type[asyncio.Protocol] | str
    http: type[asyncio.Protocol] | str
    if ws_differences:
        ws = FALLBACK_WS if FALLBACK_WS in getattr(uvicorn.config, "WS_PROTOCOLS", {}) else "auto"
    else:
        from .uvicorn_ws import websocket_protocol

        ws = websocket_protocol(frame_limit, incomplete)
    if http_differences:
        http = FALLBACK_HTTP
    else:
        from .uvicorn_http import guarded_protocol

        http = guarded_protocol(max_head_bytes, head_timeout)
    found = tuple(dict.fromkeys(ws_differences + http_differences))
    if found:
        served = [f"WebSockets through ASGI send (uvicorn's {ws!r})"] if ws_differences else []
        served += [f"HTTP through uvicorn's {http!r} (request heads bounded in bytes, no deadline)"] if http_differences else []
        verified = ", ".join(f"{package}{_bounds(package)}" for package in VERIFIED)
        logger.warning(
            "not verified for the fast path: %s; serving %s (verified: %s; see the README's 'Dependency bounds')",
            "; ".join(map(str, found)),
            " and ".join(served),
            verified,
        )
    return Selection(ws, http, found)
