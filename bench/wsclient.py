"""A minimal, fast ActionCable client on ``asyncio.Protocol``: the load generator's socket.

General clients (``websockets``, ``protocol_tests.client``) spend a task, a queue and a parser
object per connection and a coroutine switch per frame; with 10,000 sockets that client, not the
server, would be what a benchmark measures. This one is a protocol object per socket: the HTTP
upgrade request is written by hand, the server's (unmasked) frames are cut out of
``data_received`` in place, and each text frame is one ``orjson.loads``. The arrival time is read
once per ``data_received`` and handed to a :class:`Handler` with every message.

It is not a conforming client: the handshake's ``Sec-WebSocket-Accept`` is not checked and
extensions are never offered. Client frames are masked, as servers require.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import time
from typing import Any, Protocol, cast

import orjson

__all__ = ["CableClient", "ConnectFailed", "Handler", "open_client"]

_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
_OP_CONTINUATION, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING = 0x0, 0x1, 0x2, 0x8, 0x9


class ConnectFailed(Exception):
    """The socket, the upgrade or the subscription failed; the message says which."""


class Handler(Protocol):
    """Receives what clients decode. Called from ``data_received``: must not block."""

    def on_message(self, client: CableClient, message: Any, now_ns: int) -> None:
        """``message`` is a broadcast or transmission's ``message`` value; ``now_ns`` its arrival."""


class _Ignore:
    def on_message(self, client: CableClient, message: Any, now_ns: int) -> None:
        pass


IGNORE: Handler = _Ignore()


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (FIN set)."""
    length = len(payload)
    if length < 126:
        head = bytes((0x80 | opcode, 0x80 | length))
    elif length < 1 << 16:
        head = bytes((0x80 | opcode, 0xFE)) + length.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0xFF)) + length.to_bytes(8, "big")
    mask = os.urandom(4)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")
    return head + mask + masked


class CableClient(asyncio.Protocol):
    """One ActionCable connection with at most one subscription (``identifier``).

    ``ready`` resolves on ``confirm_subscription`` (or on ``welcome`` when there is no
    identifier) and fails on a rejected upgrade or subscription, or a lost connection.
    """

    __slots__ = (
        "_buffer",
        "_fragments",
        "_upgraded",
        "closed",
        "handler",
        "identifier",
        "pings",
        "ready",
        "request",
        "slot",
        "transport",
    )

    def __init__(self, request: bytes, identifier: str | None, handler: Handler, ready: asyncio.Future[None]) -> None:
        self.request, self.identifier, self.handler, self.ready = request, identifier, handler, ready
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._fragments: list[bytes] = []
        self._upgraded = False
        self.closed = False
        self.pings = 0
        #: Free for the handler's per-client state.
        self.slot: Any = None

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not an asyncio.Transport subclass
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(f"connection lost ({exc or 'closed by the server'})")

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        buffer = self._buffer + data if self._buffer else data
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                self._buffer = buffer
                return
            status = buffer[: buffer.find(b"\r\n")]
            if b" 101 " not in status:
                self._fail(f"upgrade refused: {status.decode(errors='replace')}")
                self.abort()
                return
            self._upgraded = True
            buffer = buffer[end + 4 :]
        self._buffer = buffer[self._frames(buffer, now) :]

    # --- frames ----------------------------------------------------------------------------------

    def _frames(self, buffer: bytes, now: int) -> int:
        """Handle every complete frame in ``buffer``; returns the bytes consumed."""
        pos, size = 0, len(buffer)
        while size - pos >= 2:
            first, length = buffer[pos], buffer[pos + 1] & 0x7F
            head = 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            payload = buffer[pos + head : end]
            pos = end
            opcode = first & 0x0F
            if opcode in (_OP_TEXT, _OP_BINARY, _OP_CONTINUATION):
                if not first & 0x80:  # a fragment: keep until FIN
                    self._fragments.append(payload)
                    continue
                if self._fragments:
                    payload = b"".join([*self._fragments, payload])
                    self._fragments.clear()
                self._message(orjson.loads(payload), now)
            elif opcode == _OP_PING:
                self._write(_frame(0xA, payload))
            elif opcode == _OP_CLOSE:
                self._fail("closed by the server")
                self.abort()
                return size
        return pos

    def _message(self, frame: Any, now: int) -> None:
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind is None:
            self.handler.on_message(self, frame.get("message"), now)
        elif kind == "ping":
            self.pings += 1
        elif kind == "welcome":
            if self.identifier is None:
                self._resolve()
            else:
                self.send({"command": "subscribe", "identifier": self.identifier})
        elif kind == "confirm_subscription":
            self._resolve()
        elif kind in ("reject_subscription", "disconnect"):
            self._fail(f"{kind}: {frame}")

    def _resolve(self) -> None:
        if not self.ready.done():
            self.ready.set_result(None)

    def _fail(self, reason: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(ConnectFailed(reason))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # --- commands --------------------------------------------------------------------------------

    def send(self, command: dict[str, Any]) -> None:
        """Send an ActionCable command (``subscribe``, ``message``...) as one masked text frame."""
        self._write(_frame(_OP_TEXT, orjson.dumps(command)))

    def perform(self, action: str, **data: Any) -> None:
        """``perform(action, data)`` on the subscription, as ``@rails/actioncable`` sends it."""
        payload = orjson.dumps({"action": action, **data}).decode()
        self.send({"command": "message", "identifier": self.identifier, "data": payload})

    def abort(self) -> None:
        """Drop the connection at once (RST): no close handshake, no TIME_WAIT left behind."""
        if self.transport is not None:
            self.transport.abort()


async def open_client(
    host: str,
    port: int,
    target: str,
    *,
    origin: str,
    identifier: str | None,
    handler: Handler = IGNORE,
    source: str | None = None,
) -> CableClient:
    """Connect to ``ws://host:port/target``, subscribe to ``identifier``; return once confirmed.

    ``source`` binds the socket to that local address (127.0.0.2...): one source address has
    ~28,000 ephemeral ports, fewer once TIME_WAIT holds some. ``IP_BIND_ADDRESS_NO_PORT`` defers
    the port choice to ``connect``, so sockets to different servers may share ports.
    Raises :class:`ConnectFailed` (or ``OSError``); the caller bounds the time.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            sock.setsockopt(socket.SOL_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        await loop.sock_connect(sock, (host, port))
    except BaseException:
        sock.close()
        raise
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: actioncable-v1-json\r\nOrigin: {origin}\r\n\r\n"
    ).encode()
    ready: asyncio.Future[None] = loop.create_future()
    _, client = await loop.create_connection(lambda: CableClient(request, identifier, handler, ready), sock=sock)
    try:
        await ready
    except BaseException:
        client.abort()
        raise
    return client
