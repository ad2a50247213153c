"""Health checks for orchestrators and load balancers, served by the ``CableServer`` itself.

* liveness (``Settings.health_path``, ``/health``): 200 ``{"status":"ok"}`` whenever the
  process answers HTTP at all; restart the process when it does not.
* readiness (``Settings.ready_path``, ``/health/ready``): 200 ``{"status":"ok"}`` when new
  clients would be served well, else 503 ``{"status":"unavailable","reason":...}``: the server
  has not started or is draining (it told its clients ``server_restart``), or the pub/sub does
  not answer (Redis down: broadcasts from other processes would be lost). Take the process out of
  rotation, do not restart it: its clients keep their sockets and the Redis subscriber reconnects.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from .errors import PubSubError

if TYPE_CHECKING:
    from .server import CableServer

__all__ = ["live", "readiness_problem", "ready"]

#: Seconds the readiness check waits for the pub/sub to answer.
PING_TIMEOUT = 2.0


async def live(scope: Scope, receive: Receive, send: Send) -> None:
    """The liveness endpoint."""
    await JSONResponse({"status": "ok"})(scope, receive, send)


async def readiness_problem(server: CableServer) -> str | None:
    """Why ``server`` should get no new clients now, or ``None`` when it is ready."""
    if not server.running:
        return "not started"
    if server.draining:
        return "draining"
    try:
        async with asyncio.timeout(PING_TIMEOUT):
            await server.router.backend.ping()
    except PubSubError as exc:
        return f"pub/sub: {exc}"
    except TimeoutError:
        return f"pub/sub: no answer within {PING_TIMEOUT} s"
    return None


async def ready(server: CableServer, scope: Scope, receive: Receive, send: Send) -> None:
    """The readiness endpoint: 200 or 503 with the reason."""
    problem = await readiness_problem(server)
    if problem is None:
        response = JSONResponse({"status": "ok"})
    else:
        response = JSONResponse({"status": "unavailable", "reason": problem}, status_code=503)
    await response(scope, receive, send)
