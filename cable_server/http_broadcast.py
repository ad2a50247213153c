"""``POST /_broadcast``: broadcasting over HTTP for producers that are not Python (off by default).

Enabled by ``Settings.broadcast_secret``; callers send ``Authorization: Bearer <secret>`` and a
JSON body ``{"stream": "...", "data": ...}`` or a list of them. The answer is ``{"broadcasts": n}``.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from . import encoding
from .errors import PubSubError

if TYPE_CHECKING:
    from .server import CableServer

__all__ = ["BroadcastEndpoint", "has_bearer"]

MAX_BODY = 1 << 20


def has_bearer(request: HTTPConnection, secret: str) -> bool:
    """Whether ``request`` carries ``Authorization: Bearer <secret>`` (the scheme in any case, as
    RFC 7235 has it; the secret compared in constant time)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), secret.encode())


def _refuse(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_body(request: Request) -> bytes | None:
    """The body, or ``None`` once it is over ``MAX_BODY``: read in chunks and counted, so neither a
    false ``Content-Length`` nor a chunked body gets more than that into memory."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


class BroadcastEndpoint:
    """The ASGI endpoint; refuses (401) any request without the exact bearer secret."""

    def __init__(self, server: CableServer, secret: str) -> None:
        self.server = server
        self._secret = secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handle(Request(scope, receive))
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> JSONResponse:
        if request.method != "POST":
            return _refuse(405, "use POST")
        if not has_bearer(request, self._secret):
            return _refuse(401, "missing or wrong bearer secret")
        raw = await _read_body(request)
        if raw is None:
            return _refuse(413, f"body over {MAX_BODY} bytes")
        try:
            body: Any = encoding.loads(raw)
        except encoding.DecodeError:
            return _refuse(400, "body is not JSON")
        items = body if isinstance(body, list) else [body]
        if not items or not all(isinstance(i, dict) and isinstance(i.get("stream"), str) and "data" in i for i in items):
            return _refuse(400, 'expected {"stream": "<name>", "data": <JSON>} or a list of them')
        try:
            for item in items:
                await self.server.broadcast(item["stream"], item["data"])
        except PubSubError as exc:
            return _refuse(503, str(exc))
        return JSONResponse({"broadcasts": len(items)})
