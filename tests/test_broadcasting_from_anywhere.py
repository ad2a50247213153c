"""Broadcasting from outside the server: Broadcaster, SyncBroadcaster, `cable-server broadcast`, POST /_broadcast."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator

import httpx

from cable_server import Broadcaster, SyncBroadcaster
from cable_server.testing import RedisServer
from protocol_tests.client import closed_with, ident

from .frontend import ROOT
from .test_redis_processes import ECHO, Start, start

__all__ = ["start"]  # the fixture, shared with the multi-process tests

FRAME = (
    '{"identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"shared\\"}",'
    '"message":{"from":"worker","html":"\\u003cb\\u003e"}}'
)
MESSAGE = {"from": "worker", "html": "<b>"}


async def test_broadcaster_reaches_every_process_in_rails_bytes(start: Start, redis_server: RedisServer) -> None:
    """From a worker: Broadcaster publishes to Redis; clients of two processes get Rails' exact frame."""
    first, second = await start("ours", "anywhere"), await start("ours", "anywhere")
    alice, bob = await first.client("alice"), await second.client("bob")
    for client in (alice, bob):
        await client.subscribe(ECHO)
    async with Broadcaster(redis_server.url, channel_prefix="anywhere") as cable:
        assert await cable.broadcast("echo_shared", MESSAGE) == 2
        assert await alice.recv_raw() == await bob.recv_raw() == FRAME
        await cable.disconnect(current_user="bob", reconnect=False)
    assert await bob.recv() == {"type": "disconnect", "reason": "remote", "reconnect": False}
    assert await closed_with(bob) == 1000


async def test_sync_broadcaster_for_celery_style_code(start: Start, redis_server: RedisServer) -> None:
    server = await start("ours", "sync")
    client = await server.client("carol")
    await client.subscribe(ECHO)
    with SyncBroadcaster(redis_server.url, channel_prefix="sync") as cable:
        await asyncio.to_thread(cable.broadcast, "echo_shared", MESSAGE)
    assert await client.recv_raw() == FRAME


async def test_the_broadcast_command(start: Start, redis_server: RedisServer) -> None:
    """cable-server broadcast STREAM JSON --pubsub URL: delivered; a message that is not JSON is refused."""
    server = await start("ours", "command")
    client = await server.client("dave")
    await client.subscribe(ECHO)
    base = [sys.executable, "-m", "cable_server", "broadcast", "--pubsub", redis_server.url, "--channel-prefix", "command"]
    done = await asyncio.create_subprocess_exec(*base, "echo_shared", '{"from":"worker","html":"<b>"}', cwd=ROOT, stdout=-1)
    out, _ = await done.communicate()
    assert done.returncode == 0 and b"1 server process(es) listening" in out
    assert await client.recv_raw() == FRAME
    refused = await asyncio.create_subprocess_exec(*base, "echo_shared", "not json", cwd=ROOT, stderr=-1)
    _, err = await refused.communicate()
    assert refused.returncode != 0 and b"MESSAGE is not JSON" in err


async def test_post_broadcast_with_the_secret(start: Start) -> None:
    """POST /_broadcast: one message or a batch with the bearer secret; 401 without it; 400 for a bad body."""
    server = await start("ours", "http", "--broadcast-secret", "s3cret")
    client = await server.client("erin")
    await client.subscribe(ECHO)
    url = f"http://127.0.0.1:{server.port}/_broadcast"
    auth = {"Authorization": "Bearer s3cret"}
    async with httpx.AsyncClient() as http:
        single = await http.post(url, headers=auth, json={"stream": "echo_shared", "data": MESSAGE})
        batch = await http.post(url, headers=auth, json=[{"stream": "echo_shared", "data": n} for n in (1, 2)])
        no_secret = await http.post(url, json={"stream": "echo_shared", "data": "x"})
        wrong = await http.post(url, headers={"Authorization": "Bearer nope"}, json={"stream": "echo_shared", "data": "x"})
        bad = await http.post(url, headers=auth, json={"data": 1})
    assert (single.status_code, single.json()) == (200, {"broadcasts": 1})
    assert (batch.status_code, batch.json()) == (200, {"broadcasts": 2})
    assert (no_secret.status_code, wrong.status_code, bad.status_code) == (401, 401, 400)
    assert await client.recv_raw() == FRAME
    assert [(await client.recv())["message"] for _ in range(2)] == [1, 2]
    await client.expect_silence(0.3)


async def test_post_broadcast_is_off_by_default(start: Start) -> None:
    server = await start("ours", "closed")
    async with httpx.AsyncClient() as http:
        response = await http.post(f"http://127.0.0.1:{server.port}/_broadcast", json={"stream": "s", "data": 1})
    assert response.status_code == 404
    await (await server.client("x")).subscribe(ident("EchoChannel", room="still-serving"))


async def test_post_broadcast_bounds_a_chunked_body_and_refuses_deep_json(start: Start) -> None:
    """A chunked body (no Content-Length) over 1 MiB gets 413 and is not broadcast; JSON nested deeper
    than Ruby's max_nesting (100) gets 400, not 500; the endpoint and the cable go on."""
    server = await start("ours", "bounds", "--broadcast-secret", "s3cret")
    client = await server.client("frank")
    await client.subscribe(ECHO)
    url = f"http://127.0.0.1:{server.port}/_broadcast"
    auth = {"Authorization": "Bearer s3cret"}

    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"stream": "echo_shared", "data": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    async with httpx.AsyncClient() as http:
        too_big = await http.post(url, headers=auth, content=chunked())
        deep = await http.post(url, headers=auth, content=b"[" * 100_000 + b"]" * 100_000)
        deep_data = await http.post(
            url, headers=auth, content=b'{"stream":"echo_shared","data":' + b"[" * 500 + b"]" * 500 + b"}"
        )
        fine = await http.post(url, headers=auth, json={"stream": "echo_shared", "data": "after"})
        again = await http.post(url, headers=auth, json={"stream": "echo_shared", "data": "again"})
    assert "content-length" not in too_big.request.headers
    assert (too_big.status_code, deep.status_code, deep_data.status_code, fine.status_code) == (413, 400, 400, 200)
    assert again.status_code == 200  # on the same connection: the refused body was not taken for a request
    assert (await client.recv())["message"] == "after"
    assert (await client.recv())["message"] == "again"
    await client.expect_silence(0.3)
