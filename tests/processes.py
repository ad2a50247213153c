"""``cable-server`` run as users run it: a real process on a free port, over HTTP or TLS."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from protocol_tests.client import CableClient

from .frontend import free_port, listening, self_signed_certificate

COMMAND = str(Path(sys.executable).with_name("cable-server"))
ROOT = Path(__file__).resolve().parent.parent


def trust_anything() -> ssl.SSLContext:
    """A client TLS context for the test's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process, port: int, *, tls: bool = False) -> None:
        self.process = process
        self.port = port
        self.tls = tls
        self.origin = f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    async def client(self, path: str = "/cable", origin: str | None = None) -> CableClient:
        scheme = "wss" if self.tls else "ws"
        return await CableClient.connect(
            f"{scheme}://127.0.0.1:{self.port}{path}", origin=origin or self.origin, ssl=trust_anything() if self.tls else None
        )

    async def healthy(self) -> None:
        """Wait until ``GET /health`` answers 200 (every worker loaded, when there are several)."""
        async with httpx.AsyncClient(verify=False) as http:
            for _ in range(600):
                try:
                    if (await http.get(f"{self.origin}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError("cable-server is not healthy after 60 s")

    async def output(self) -> str:
        assert self.process.stdout is not None
        return (await self.process.stdout.read()).decode()


Launcher = Callable[..., Awaitable[ServerProcess]]


def rss_kib(pid: int) -> int:
    """The resident memory of process ``pid``, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Launcher]:
    """Start ``cable-server ARGS`` on a free port and wait until it accepts connections.

    ``tls=True`` adds ``--ssl-certfile``/``--ssl-keyfile`` with a certificate made for the test.
    At the end each is sent SIGTERM (passed on to its workers), and killed if still there.
    """
    started: list[ServerProcess] = []

    async def start(
        *args: str,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = (COMMAND,),
        tls: bool = False,
        port: int | None = None,
    ) -> ServerProcess:
        """``env``: variables set on top of a copy of ours without any OPENAI_/CABLE_ one; ``port``:
        that one (a server started again where its clients are), else a free one."""
        port = port or free_port()
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CABLE_"))}
        if tls:
            cert, key = self_signed_certificate(tmp_path)
            args = (*args, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            "--port",
            str(port),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**clean, **(env or {})},
        )
        server = ServerProcess(process, port, tls=tls)
        started.append(server)
        await listening(port, process, "cable-server", 60)
        return server

    yield start
    for server in started:
        if server.process.returncode is None:
            server.process.terminate()
            try:
                await asyncio.wait_for(server.process.wait(), 15)
            except TimeoutError:
                server.process.kill()
        await server.process.wait()
