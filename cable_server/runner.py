"""Serving a ``CableServer`` with uvicorn, including a graceful, announced shutdown.

uvicorn closes every WebSocket with 1012 *before* the ASGI lifespan shutdown runs, so a
lifespan hook is too late to tell clients anything. :class:`CableUvicornServer` stops
accepting connections, sends ``{"type":"disconnect","reason":"server_restart",
"reconnect":true}`` to every client and waits for them to close, and only then lets uvicorn
shut down.
"""

from __future__ import annotations

import functools
import gc
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

from . import compat, logs
from .limits import FrameLimit, IncompleteLimit, LimitKind
from .server import CableServer

__all__ = ["CableUvicornServer", "config_for", "run", "run_workers", "set_dead_peer_timeout", "tune_gc"]


class CableUvicornServer(uvicorn.Server):
    """uvicorn's server, draining the cable (``server_restart`` to every client) before it shuts down."""

    def __init__(self, config: uvicorn.Config, cable: CableServer) -> None:
        super().__init__(config)
        self.cable = cable
        logs.filter_credentials()  # after uvicorn configured its loggers: no token in a request log line

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then give the listening sockets the dead-peer timeout."""
        await super().startup(sockets)
        set_dead_peer_timeout([sock for server in self.servers for sock in server.sockets], self.cable.settings.dead_peer_timeout)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, tell every client the server restarts, wait for them, then shut down."""
        for server in self.servers:
            server.close()  # no new connections while the old ones drain
        await self.cable.drain()
        await super().shutdown(sockets)


def set_dead_peer_timeout(listeners: Sequence[Any], seconds: float | None) -> None:
    """``TCP_USER_TIMEOUT`` on the listening sockets, which every accepted connection inherits
    (Linux): unacknowledged data may stay in flight ``seconds`` before the kernel drops the
    connection. The cable pings every few seconds, so a client that vanished without closing
    is found this way at no cost per connection (no WebSocket ping/pong timers)."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if seconds is None or option is None:
        return
    for sock in listeners:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


def config_for(
    cable: CableServer, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **options: Any
) -> uvicorn.Config:
    """The uvicorn configuration the cable needs: lifespan on, no compression unless enabled,
    frames written directly (:mod:`cable_server.uvicorn_ws`), request heads bounded
    (:mod:`cable_server.uvicorn_http`); uvicorn's own protocols instead, with one warning, when
    the uvicorn or ``websockets`` installed is not what those were verified against
    (:mod:`cable_server.compat`).

    ``options`` go to ``uvicorn.Config`` as they are (``log_config=None``, ``ssl_certfile``...).
    """
    settings = cable.settings
    flooded = functools.partial(cable.metrics.limit_hit, LimitKind.FRAME_RATE)
    frames = FrameLimit(settings.frame_rate, settings.frame_burst, flooded)
    incomplete = IncompleteLimit(settings.incomplete_timeout, settings.max_incomplete_bytes_per_address, cable.metrics.limit_hit)
    protocols = compat.select_protocols(settings.max_request_head_bytes, settings.request_head_timeout, frames, incomplete)
    options.setdefault("http", protocols.http)
    options.setdefault("h11_max_incomplete_event_size", settings.max_request_head_bytes + 1)  # the guard answers first
    return uvicorn.Config(
        cable,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        ws=protocols.ws,
        ws_ping_interval=None,  # the cable pings; dead peers are found by dead_peer_timeout
        ws_per_message_deflate=cable.settings.per_message_deflate,
        ws_max_size=cable.settings.max_frame_bytes,
        timeout_graceful_shutdown=max(1, round(cable.settings.shutdown_timeout)),
        **options,
    )


def tune_gc() -> None:
    """Fit CPython's cyclic garbage collector to a process that holds thousands of connections.

    Every connection keeps a hundred or so container objects alive for its lifetime. With the
    default thresholds (700, 10, 10) the young generations are collected every few new
    connections and the full collections walk every connection's objects: a fifth of the CPU a
    new connection costs (measured: 570 -> 450 µs of user CPU per connection at 10,000). Reference
    counting still frees everything that is not in a cycle at once; what is left to the
    collector is cyclic garbage, collected less often. ``gc.freeze()`` moves what exists at
    start (modules, classes) out of every future collection.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def run(
    cable: CableServer,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    fd: int | None = None,
    uvicorn_logging: bool = True,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    ssl_keyfile_password: str | None = None,
) -> None:
    """Serve ``cable`` until SIGINT/SIGTERM, then shut down gracefully.

    ``fd``: serve on an inherited listening socket instead (the workers of ``--workers``).
    ``uvicorn_logging=False``: uvicorn's records go to the root logger's handlers (JSON logs)
    instead of uvicorn's own. ``ssl_certfile``, ``ssl_keyfile`` (and its password): serve TLS (``https://``,
    ``wss://``), for a frontend that hard-codes ``wss://`` and no proxy in front.
    """
    tune_gc()
    options: dict[str, Any] = {} if uvicorn_logging else {"log_config": None}
    config = config_for(
        cable,
        host=host,
        port=port,
        log_level=log_level,
        fd=fd,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        ssl_keyfile_password=ssl_keyfile_password,
        **options,
    )
    CableUvicornServer(config, cable).run()


def run_workers(argv: Sequence[str], workers: int, *, host: str, port: int) -> int:
    """Run ``workers`` processes of ``cable-server argv`` on one listening socket (the kernel
    spreads connections). SIGTERM is passed on and each worker drains its clients; Ctrl-C
    reaches them directly (they share the terminal's process group)."""
    listener = socket.create_server((host, port), reuse_port=False, backlog=2048)
    listener.set_inheritable(True)
    command = [sys.executable, "-m", "cable_server", *argv, "--workers", "1", "--fd", str(listener.fileno())]
    children = [subprocess.Popen(command, pass_fds=[listener.fileno()]) for _ in range(workers)]

    def forward(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    # uvicorn re-raises the signal it handled once it has shut down: dying of it is a clean exit.
    clean = (0, -signal.SIGTERM, -signal.SIGINT)
    codes = [0 if code in clean else code for code in (child.wait() for child in children)]
    listener.close()
    return max(codes, key=abs)
