"""Processes sharing one Redis: ``--workers``, two servers, and a Rails app beside ours (Rails 6.1 on puma)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest

from cable_server.testing import RedisServer
from protocol_tests.client import CableClient, closed_with, ident

from .frontend import ROOT, free_port

ECHO = ident("EchoChannel", room="shared")
ORIGIN = "http://localhost:3000"  # allowed by both fixture apps


@dataclass
class Process:
    name: str
    port: int
    process: asyncio.subprocess.Process

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/cable"

    async def client(self, user: str) -> CableClient:
        return await CableClient.connect(f"{self.url}?user={user}", origin=ORIGIN)

    async def admin(self, action: str, body: object = None, **params: str) -> None:
        async with httpx.AsyncClient() as http:
            response = await http.post(f"http://127.0.0.1:{self.port}/__admin/{action}", params=params, json=body)
        assert response.status_code == 200, response.text


Start = Callable[..., Awaitable[Process]]


@pytest.fixture
async def start(redis_server: RedisServer) -> AsyncIterator[Start]:
    """``await start("ours" | "rails", prefix)``: a fixture server on the session's Redis."""
    started: list[Process] = []

    async def launch(kind: str, prefix: str, *extra: str) -> Process:
        port = free_port()
        env = {**os.environ, "CABLE_REDIS_URL": redis_server.url, "CABLE_CHANNEL_PREFIX": prefix, "CABLE_LOG_LEVEL": "warn"}
        if kind == "rails":
            command = [str(ROOT / "protocol_tests" / "rails_reference" / "start"), str(port)]
        else:
            command = [sys.executable, "-m", "protocol_tests.fixture", "--port", str(port), "--log-level", "warning"]
            command += ["--pubsub", redis_server.url, "--channel-prefix", prefix, *extra]
        process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        server = Process(kind, port, process)
        started.append(server)
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                if process.returncode is not None:
                    raise AssertionError(f"{kind} server exited with {process.returncode}")
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/__admin/health")).status_code == 200:
                        return server
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"{kind} server did not start")

    yield launch
    for server in started:
        if server.process.returncode is None:
            server.process.terminate()
        await server.process.wait()


async def test_two_processes_share_broadcasts_and_remote_disconnects(start: Start) -> None:
    """A broadcast made in one process reaches a client of the other; a remote disconnect too."""
    first, second = await start("ours", "two"), await start("ours", "two")
    alice, bob = await first.client("alice"), await second.client("bob")
    for client in (alice, bob):
        await client.subscribe(ECHO)
    await first.admin("broadcast", {"hello": "<b>"}, stream="echo_shared")
    assert await bob.recv_raw() == await alice.recv_raw()
    await second.admin("disconnect", user="alice", reconnect="false")
    assert await alice.recv() == {"type": "disconnect", "reason": "remote", "reconnect": False}
    assert await closed_with(alice) == 1000


async def test_rails_and_cable_server_share_one_redis(start: Start) -> None:
    """Rails 6.1 and ours, same Redis and channel_prefix: broadcasts both ways arrive as identical
    bytes, and remote disconnect works both ways."""
    ours, rails = await start("ours", "interop"), await start("rails", "interop")
    on_ours, on_rails = await ours.client("alice"), await rails.client("bob")
    for client in (on_ours, on_rails):
        await client.subscribe(ECHO)
    for origin in (ours, rails):
        await origin.admin("broadcast", {"from": origin.name, "html": "<p>&</p>", "n": [1, 2.5, None]}, stream="echo_shared")
        frames = [await on_ours.recv_raw(), await on_rails.recv_raw()]
        assert frames[0] == frames[1], frames
        assert f'"from":"{origin.name}"' in frames[0]
    await ours.admin("disconnect", user="bob")
    assert await closed_with(on_rails) in (1000, 1005, 1006)  # Rails 6.1 closes without a disconnect frame
    await rails.admin("disconnect", user="alice")
    assert await on_ours.recv() == {"type": "disconnect", "reason": "remote", "reconnect": True}


async def test_workers_serve_one_port_and_share_broadcasts(redis_server: RedisServer) -> None:
    """cable-server --workers 2: two processes accept on one port; a broadcast reaches the clients of
    both; SIGTERM drains every client with server_restart."""
    port = free_port()
    command = [sys.executable, "-m", "cable_server", "tests.fixture_app:create_app", "--workers", "2"]
    command += ["--pubsub", redis_server.url, "--channel-prefix", "workers", "--port", str(port), "--log-level", "warning"]
    supervisor = await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=subprocess.DEVNULL)
    clients: list[CableClient] = []
    try:
        pids: set[int] = set()
        deadline = asyncio.get_running_loop().time() + 20  # each worker imports the app on its own
        while asyncio.get_running_loop().time() < deadline:
            try:
                client = await CableClient.connect(
                    f"ws://127.0.0.1:{port}/cable?user=u{len(clients)}", origin=f"http://127.0.0.1:{port}"
                )
            except OSError:
                await asyncio.sleep(0.1)
                continue
            clients.append(client)
            await client.subscribe(ident("EchoChannel", room="w"))
            await client.perform(ident("EchoChannel", room="w"), "pid")
            pids.add((await client.recv())["message"]["pid"])
            if len(pids) == 2 and len(clients) >= 4:
                break
            if len(pids) == 1 and len(clients) >= 4:
                await asyncio.sleep(0.1)  # the other worker may still be starting
        assert len(pids) == 2, "every connection landed on one worker"
        await clients[0].perform(ident("EchoChannel", room="w"), "shout", payload={"to": "everyone"})
        for client in clients:
            assert (await client.recv())["message"] == {"to": "everyone"}
        supervisor.send_signal(signal.SIGTERM)
        for client in clients:
            assert (await client.recv())["reason"] == "server_restart"
        assert await asyncio.wait_for(supervisor.wait(), 15) == 0
    finally:
        for client in clients:
            await client.close()
        if supervisor.returncode is None:
            supervisor.kill()
            await supervisor.wait()
