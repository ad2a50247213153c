"""A WebSocket client in a few lines of asyncio, for the tests a full client library cannot do:
a thousand subscribers in one test process, or one client whose socket stops reading."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

__all__ = ["CLOSE", "CONTINUATION", "PING", "PONG", "TEXT", "Closed", "RawCable", "masked", "parse_frames"]

CONTINUATION, TEXT, CLOSE, PING, PONG = 0x0, 0x1, 0x8, 0x9, 0xA


class Closed(Exception):
    """The server sent a close frame."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with {code}")
        self.code = code


def _header(data: bytes | bytearray, start: int = 0) -> tuple[int, int, int] | None:
    """(opcode, payload start, payload end) of the unmasked server frame at ``start``, or None if incomplete."""
    if len(data) < start + 2:
        return None
    opcode, length, at = data[start] & 0x0F, data[start + 1] & 0x7F, start + 2
    if length >= 126:
        size = 2 if length == 126 else 8
        if len(data) < at + size:
            return None
        length = int.from_bytes(data[at : at + size], "big")
        at += size
    return (opcode, at, at + length) if len(data) >= at + length else None


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Every complete frame in ``data``, as (opcode, payload)."""
    frames, at = [], 0
    while (header := _header(data, at)) is not None:
        opcode, start, end = header
        frames.append((opcode, data[start:end]))
        at = end
    return frames


def masked(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    mask = os.urandom(4)
    size = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack("!H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class RawCable:
    """One ActionCable socket over a plain non-blocking ``socket``; nothing is read unless asked."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self._buffer = bytearray(leftover)

    @classmethod
    async def connect(
        cls,
        port: int,
        path: str = "/cable",
        *,
        rcvbuf: int | None = None,
        source: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> RawCable:
        """Upgrade with ``actioncable-v1-json``; ``rcvbuf``: a small kernel receive buffer, set
        before connecting; ``source``: the local address to connect from (another loopback
        address is another client address); ``headers``: more request headers."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.bind((source, 0))
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n"
            f"Origin: http://127.0.0.1:{port}\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
            + "\r\n"
        )
        await loop.sock_sendall(sock, request.encode())
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = await loop.sock_recv(sock, 4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            response += chunk
        head, _, rest = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head.split(b"\r\n")[0].decode())
        return cls(sock, rest)

    async def send(self, command: dict[str, Any]) -> None:
        await asyncio.get_running_loop().sock_sendall(self.sock, masked(TEXT, json.dumps(command).encode()))

    async def subscribe(self, identifier: str) -> None:
        """Subscribe and wait for the confirmation (skipping the welcome and pings)."""
        await self.send({"command": "subscribe", "identifier": identifier})
        while (await self.recv()).get("type") != "confirm_subscription":
            pass

    async def recv(self) -> Any:
        """The next text frame, decoded; raises :class:`Closed` at a close frame, EOFError at the end."""
        loop = asyncio.get_running_loop()
        while True:
            header = _header(self._buffer)
            if header is not None:
                opcode, start, end = header
                payload = bytes(self._buffer[start:end])
                del self._buffer[:end]
                if opcode == CLOSE:
                    raise Closed(int.from_bytes(payload[:2], "big"))
                if opcode == TEXT:
                    return json.loads(payload)
                continue
            chunk = await loop.sock_recv(self.sock, 1 << 16)
            if not chunk:
                raise EOFError
            self._buffer += chunk

    async def read_until_closed(self) -> list[tuple[int, bytes]]:
        """Every frame the socket still delivers, up to a close frame or the end of the connection."""
        loop = asyncio.get_running_loop()
        data = bytes(self._buffer)
        self._buffer.clear()
        while not any(opcode == CLOSE for opcode, _ in parse_frames(data)):
            chunk = await loop.sock_recv(self.sock, 1 << 16)
            if not chunk:
                break
            data += chunk
        return parse_frames(data)

    def close(self) -> None:
        self.sock.close()
