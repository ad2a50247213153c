"""Which server the suite talks to, and the fixtures every case uses.

``--cable-url``/``--admin-url`` point the suite at a running server (ours or Rails'); without
them it starts our fixture app (``python -m protocol_tests.fixture``) on a free port.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from cable_server.testing import RedisServer

from .client import CableClient
from .differences import DIFFERENCES

ALLOWED_ORIGIN = "http://localhost:3000"
ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("protocol_tests")
    group.addoption("--cable-url", help="ws://HOST:PORT/cable of the server under test (default: start ours)")
    group.addoption("--admin-url", help="http://HOST:PORT/__admin of the fixture's admin hooks")
    group.addoption(
        "--backend",
        choices=["memory", "redis"],
        default="memory",
        help="pub/sub of the fixture server we start: in-process, or a redis-server started for the run",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "differs(key): the case covers a difference listed in differences.py")


@dataclass
class Target:
    """The server under test."""

    cable_url: str
    admin_url: str
    server: str  # "rails" or "cable-server"
    version: tuple[int, ...]

    @property
    def http_url(self) -> str:
        parts = urlsplit(self.cable_url)
        return f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}"

    @property
    def host(self) -> str:
        return urlsplit(self.cable_url).netloc

    @property
    def is_rails(self) -> bool:
        return self.server == "rails"

    def admin(self, action: str, body: Any = None, **params: str) -> None:
        """POST to an admin hook (broadcast, disconnect, restart) and check it succeeded."""
        content = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        response = httpx.post(f"{self.admin_url}/{action}", params=params, content=content, headers=headers, timeout=10)
        assert response.status_code == 200, response.text

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.admin_url}/stats", timeout=10).json()
        return result

    def statistics(self) -> list[dict[str, Any]]:
        """``open_connections_statistics``, ``started_at`` as Unix seconds."""
        result: list[dict[str, Any]] = httpx.get(f"{self.admin_url}/statistics", timeout=10).json()["connections"]
        return result


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _health(admin_url: str, deadline: float) -> dict[str, Any]:
    while True:
        try:
            health: dict[str, Any] = httpx.get(f"{admin_url}/health", timeout=2).json()
            return health
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    cable_url = request.config.getoption("cable_url")
    admin_url = request.config.getoption("admin_url")
    process = None
    redis = None
    if cable_url is None:
        port = _free_port()
        command = [sys.executable, "-m", "protocol_tests.fixture", "--port", str(port), "--log-level", "warning"]
        if request.config.getoption("backend") == "redis":
            redis = RedisServer().start()
            command += ["--pubsub", redis.url, "--channel-prefix", "conformance"]
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        cable_url = f"ws://127.0.0.1:{port}/cable"
    if admin_url is None:
        admin_url = f"http://{urlsplit(cable_url).netloc}/__admin"
    try:
        health = _health(admin_url, time.monotonic() + 20)
        version = tuple(int(part) for part in health["version"].split(".")[:3] if part.isdigit())
        yield Target(cable_url, admin_url, health["server"], version)
    finally:
        if process is not None:
            process.terminate()
            process.wait(10)
        if redis is not None:
            redis.kill()


@pytest.fixture
def rails_way(request: pytest.FixtureRequest, target: Target) -> bool:
    """For a ``differs`` case: True when the server under test gives the Rails answer."""
    marker = request.node.get_closest_marker("differs")
    assert marker is not None, "rails_way needs @pytest.mark.differs(key)"
    return DIFFERENCES[marker.args[0]].applies_to(target.server, target.version)


Connect = Callable[..., Awaitable[CableClient]]


@pytest.fixture
async def connect(target: Target) -> AsyncIterator[Connect]:
    """Open a client (``await connect(user="alice")``); every client is closed after the case."""
    clients: list[CableClient] = []

    async def open_client(
        user: str | None = None,
        *,
        path: str = "",
        origin: str | None = ALLOWED_ORIGIN,
        **options: Any,
    ) -> CableClient:
        url = target.cable_url + path + (f"?user={user}" if user else "")
        client = await CableClient.connect(url, origin=origin, **options)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        await client.close()
