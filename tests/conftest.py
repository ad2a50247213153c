"""Real servers on real sockets: uvicorn serving a CableServer on an ephemeral loopback port."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from cable_server import CableServer, MemoryBackend, PubSubBackend, RedisBackend, Settings
from cable_server.runner import CableUvicornServer, config_for
from cable_server.testing import FakeOpenAI, RedisServer
from protocol_tests.client import CableClient

from .chat_page import context, demo
from .fixture_app import create_app
from .frontend import browser, nginx, vue_chat_dist
from .processes import launch

__all__ = ["browser", "context", "demo", "launch", "nginx", "vue_chat_dist"]  # fixtures defined in their own modules


@dataclass
class RunningServer:
    cable: CableServer
    uvicorn: CableUvicornServer
    task: asyncio.Task[None]
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.cable.settings.path}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def client(self, query: str = "", **kwargs: object) -> CableClient:
        kwargs.setdefault("origin", self.origin)
        return await CableClient.connect(self.url + query, **kwargs)  # type: ignore[arg-type]

    async def stop(self) -> None:
        self.uvicorn.should_exit = True
        await self.task


ServerFactory = Callable[..., Awaitable[RunningServer]]
METRICS_SECRET = "metrics-secret-of-the-tests"


async def start_server(cable: CableServer, port: int = 0, *, ws: str | None = None, **options: Any) -> RunningServer:
    """``options`` go to uvicorn's config (``http=`` a protocol class, say). ``ws`` names a stock
    uvicorn WebSocket implementation to serve with instead of ours (the plain ASGI path)."""
    if ws is None:
        config = config_for(cable, port=port, log_level="warning", log_config=None, **options)
    else:
        config = uvicorn.Config(cable, port=port, log_level="warning", log_config=None, lifespan="on", ws=ws, **options)
    server = CableUvicornServer(config, cable)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before starting")
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    return RunningServer(cable, server, task, bound)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run the module's tests on the memory and on the Redis pub/sub")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test gets a ``backend``: both for modules marked ``both_backends``, else memory."""
    if "backend" in metafunc.fixturenames:
        both = metafunc.definition.get_closest_marker("both_backends") is not None
        metafunc.parametrize("backend", ["memory", "redis"] if both else ["memory"], indirect=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session; tests keep apart by channel prefix."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Callable[[], PubSubBackend]:
    """Makes the pub/sub for each server of a test: in-process, or Redis with a prefix of the test's own."""
    if request.param == "memory":
        return MemoryBackend
    url = request.getfixturevalue("redis_server").url
    prefix = f"test{next(_PREFIXES)}"
    return lambda: RedisBackend(url, channel_prefix=prefix)


_PREFIXES = itertools.count()


@pytest.fixture
async def serve(backend: Callable[[], PubSubBackend]) -> AsyncIterator[ServerFactory]:
    """Start servers for this test (``await serve(cable)``); all are stopped at its end.

    Each uses the test's ``backend``; servers of one test share it (one Redis prefix).
    """
    running: list[RunningServer] = []

    async def factory(cable: CableServer | None = None, port: int = 0, **settings: object) -> RunningServer:
        if cable is None:
            cable = create_app(Settings(**{"ping_interval": 0.5, "shutdown_timeout": 1.0, **settings}))  # type: ignore[arg-type]
        if isinstance(cable.router.backend, MemoryBackend):
            cable.set_pubsub(backend())
        if cable.settings.metrics_secret is None:  # the tests scrape as a configured Prometheus would
            cable.settings = dataclasses.replace(cable.settings, metrics_secret=METRICS_SECRET)
        server = await start_server(cable, port)
        running.append(server)
        return server

    yield factory
    for server in running:
        if not server.task.done():
            await server.stop()


@pytest.fixture
async def server(serve: ServerFactory) -> RunningServer:
    return await serve()


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A local OpenAI-compatible streaming server; script it with ``push(Reply(...))``."""
    async with FakeOpenAI() as fake:
        yield fake
