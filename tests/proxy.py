"""A TCP proxy whose connections can be cut at once, as a mobile network or a dying load balancer does,
or silently stalled, as a network that died without a word (nothing is closed, nothing arrives)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["CuttableProxy", "cuttable_proxy"]


class CuttableProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:target``; :meth:`cut` aborts every open connection."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.cuts = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        #: Writers whose bytes are dropped from now on (the connections stalled).
        self._stalled: set[asyncio.StreamWriter] = set()
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []

    async def start(self) -> CuttableProxy:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self) -> None:
        """Drop every connection with a TCP reset: no close frame, no FIN."""
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()
        self.cuts += 1

    def stall(self, *, upstream: bool = True, downstream: bool = True) -> None:
        """From now on drop the bytes of the open connections (to the server, to the client, or
        both), closing nothing: neither side notices until its own timeouts do. New connections
        are relayed as usual."""
        for client_writer, server_writer in self._pairs:
            if upstream:
                self._stalled.add(server_writer)
            if downstream:
                self._stalled.add(client_writer)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self._open.update((client_writer, server_writer))
        self._pairs.append((client_writer, server_writer))
        await asyncio.gather(self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer))
        self._open.difference_update((client_writer, server_writer))
        self._pairs.remove((client_writer, server_writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if writer in self._stalled:
                    continue
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            writer.close()


@contextlib.asynccontextmanager
async def cuttable_proxy(target: int) -> AsyncIterator[CuttableProxy]:
    proxy = await CuttableProxy(target).start()
    try:
        yield proxy
    finally:
        await proxy.stop()
