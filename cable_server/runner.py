"""Serving a ``CableServer`` with uvicorn, including a graceful, announced shutdown.

uvicorn closes every WebSocket with 1012 *before* the ASGI lifespan shutdown runs, so a
lifespan hook is too late to tell clients anything. :class:`CableUvicornServer` stops
accepting connections, sends ``{"type":"disconnect","reason":"server_restart",
"reconnect":true}`` to every client and waits for them to close, and only then lets uvicorn
shut down.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn

from .server import CableServer

__all__ = ["CableUvicornServer", "config_for", "run"]


class CableUvicornServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, cable: CableServer) -> None:
        super().__init__(config)
        self.cable = cable

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections while the old ones drain
        await self.cable.drain()
        await super().shutdown(sockets)


def config_for(
    cable: CableServer, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info", **options: Any
) -> uvicorn.Config:
    """The uvicorn configuration the cable needs: lifespan on, no compression unless enabled.

    ``options`` go to ``uvicorn.Config`` as they are (``log_config=None``, ``ssl_certfile``...).
    """
    return uvicorn.Config(
        cable,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        ws="websockets-sansio",
        ws_per_message_deflate=cable.settings.per_message_deflate,
        timeout_graceful_shutdown=max(1, round(cable.settings.shutdown_timeout)),
        **options,
    )


def run(cable: CableServer, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve ``cable`` until SIGINT/SIGTERM, then shut down gracefully."""
    CableUvicornServer(config_for(cable, host=host, port=port, log_level=log_level), cable).run()
