"""The Redis pub/sub: Rails' wire format, one SUBSCRIBE per stream, outages survived, processes sharing it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cable_server import PubSubError, RedisBackend, Settings
from cable_server.testing import FakeOpenAI, RedisServer, Reply
from protocol_tests.client import closed_with, ident

from .chat_helpers import chat_app, read_answer, room
from .conftest import RunningServer, ServerFactory
from .fixture_app import create_app

PREFIX = "myapp_production"
ECHO = ident("EchoChannel", room="x")


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A plain Redis client, as another program (or Rails) would use it."""
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()


async def on_redis(serve: ServerFactory, url: str, prefix: str | None = PREFIX) -> RunningServer:
    cable = create_app(Settings(ping_interval=0.5, shutdown_timeout=1.0))
    cable.set_pubsub(RedisBackend(url, channel_prefix=prefix))
    return await serve(cable)


async def numsub(raw: aioredis.Redis, channel: str) -> int:
    counts = dict(await raw.pubsub_numsub(channel))
    return int(counts[channel])


# --- Rails' wire format ---------------------------------------------------------------------


async def test_broadcasts_are_published_as_rails_does(
    serve: ServerFactory, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """PUBLISH <prefix>:<broadcasting> with ActiveSupport JSON; a string is a JSON string literal."""
    server = await on_redis(serve, redis_server.url)
    listener = raw.pubsub()
    await listener.subscribe(f"{PREFIX}:echo_x")
    await listener.get_message(timeout=1)  # the subscribe confirmation
    await server.cable.broadcast("echo_x", {"hello": "<w>", "n": 1.0})
    await server.cable.broadcast("echo_x", '{"x":1}')
    first = await listener.get_message(timeout=2)
    second = await listener.get_message(timeout=2)
    assert first is not None and first["data"] == '{"hello":"\\u003cw\\u003e","n":1.0}'
    assert second is not None and second["data"] == '"{\\"x\\":1}"'
    await listener.aclose()


async def test_without_a_prefix_the_channel_is_the_bare_broadcasting(
    serve: ServerFactory, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    server = await on_redis(serve, redis_server.url, prefix=None)
    client = await server.client()
    await client.subscribe(ident("EchoChannel", room="bare"))
    assert await numsub(raw, "echo_bare") == 1


async def test_messages_published_by_others_reach_clients_in_rails_bytes(
    serve: ServerFactory, redis_server: RedisServer, raw: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Any publisher's JSON is re-encoded as Rails would send it; a non-JSON message is dropped and logged."""
    server = await on_redis(serve, redis_server.url)
    client = await server.client()
    await client.subscribe(ECHO)
    await raw.publish(f"{PREFIX}:echo_x", '{"from": "python", "u": "<"}')
    assert (
        await client.recv_raw()
        == '{"identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"x\\"}","message":{"from":"python","u":"\\u003c"}}'
    )
    with caplog.at_level(logging.ERROR, "cable_server.pubsub.redis"):
        await raw.publish(f"{PREFIX}:echo_x", "not json")
        await raw.publish(f"{PREFIX}:echo_x", '"a string"')
        assert (await client.recv())["message"] == "a string"
    assert "not JSON" in caplog.text


async def test_the_subscriber_is_named_and_listens_to_the_internal_channel_first(
    serve: ServerFactory, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """CLIENT SETNAME ActionCable-PID-<pid>, and SUBSCRIBE _action_cable_internal (no prefix)."""
    await on_redis(serve, redis_server.url)
    names = [client["name"] for client in await raw.client_list()]
    assert f"ActionCable-PID-{os.getpid()}" in names
    assert await numsub(raw, "_action_cable_internal") >= 1


async def test_one_subscribe_per_stream_however_many_subscribers(
    serve: ServerFactory, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """Three subscriptions to one stream: one Redis SUBSCRIBE; the last one leaving UNSUBSCRIBEs."""
    server = await on_redis(serve, redis_server.url)
    clients = [await server.client() for _ in range(3)]
    for client in clients:
        await client.subscribe(ECHO)
    assert await numsub(raw, f"{PREFIX}:echo_x") == 1
    for client in clients:
        await client.unsubscribe(ECHO)
    await clients[-1].subscribe(ident("EchoChannel", room="other"))  # commands run in order: the unsubscribes are done
    await asyncio.sleep(0.05)
    assert await numsub(raw, f"{PREFIX}:echo_x") == 0


async def test_a_broadcast_right_after_the_confirmation_is_never_missed(
    serve: ServerFactory, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """The confirmation waits for Redis' SUBSCRIBE acknowledgement, so a PUBLISH made on seeing it arrives."""
    server = await on_redis(serve, redis_server.url)
    client = await server.client()
    for n in range(30):
        identifier = ident("EchoChannel", room=f"fresh{n}")
        await client.subscribe(identifier)
        await raw.publish(f"{PREFIX}:echo_fresh{n}", json.dumps({"n": n}))
        assert (await client.recv())["message"] == {"n": n}


async def test_a_remote_disconnect_published_in_redis_closes_the_connection(
    serve: ServerFactory, redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    """What Rails 6.1 publishes for remote_connections...disconnect closes our connection too."""
    server = await on_redis(serve, redis_server.url)
    alice, bob = await server.client("?user=alice"), await server.client("?user=bob")
    await raw.publish(f"{PREFIX}:action_cable/alice", '{"type":"disconnect"}')
    assert await alice.recv() == {"type": "disconnect", "reason": "remote", "reconnect": True}
    assert await closed_with(alice) == 1000
    await bob.expect_silence(0.3)


# --- several servers on one Redis -----------------------------------------------------------


async def test_broadcasts_and_remote_disconnects_cross_servers(serve: ServerFactory, redis_server: RedisServer) -> None:
    """Two servers on one Redis: a broadcast made on one reaches the clients of the other, and so does a disconnect."""
    first, second = await on_redis(serve, redis_server.url), await on_redis(serve, redis_server.url)
    here, there = await first.client("?user=alice"), await second.client("?user=bob")
    for client in (here, there):
        await client.subscribe(ECHO)
    await first.cable.broadcast("echo_x", {"from": "first"})
    assert (await there.recv())["message"] == {"from": "first"}
    assert (await here.recv())["message"] == {"from": "first"}
    await first.cable.remote_connections.where(current_user="bob").disconnect(reconnect=False)
    assert await there.recv() == {"type": "disconnect", "reason": "remote", "reconnect": False}


async def test_a_conversation_continues_on_another_server(serve: ServerFactory, redis_server: RedisServer) -> None:
    """GptChatChannel's history in Redis: the second question, asked on another server, sees the first turn."""
    async with FakeOpenAI() as fake:
        fake.push(Reply(chunks=["Paris."]), Reply(chunks=["Lyon."]))
        servers = []
        for _ in range(2):
            cable, _ = chat_app(fake, history_url=redis_server.url, history_prefix="conversation-test")
            cable.set_pubsub(RedisBackend(redis_server.url, channel_prefix="conversation-test"))
            servers.append(await serve(cable))
        for server, question in zip(servers, ["Capital?", "Second city?"], strict=True):
            alice = await server.client("?user=alice")
            await alice.subscribe(room("alice"))
            await alice.perform(room("alice"), "send_message", user_content=question)
            assert (await read_answer(alice, room("alice"))).last["event"] == "done"
        assert fake.requests[1].messages == [
            {"role": "user", "content": "Capital?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "Second city?"},
        ]


# --- outages --------------------------------------------------------------------------------


async def test_clients_survive_a_redis_restart(serve: ServerFactory, caplog: pytest.LogCaptureFixture) -> None:
    """Kill redis-server under subscribed clients: sockets stay, publishing fails loudly, and once Redis
    is back the streams are subscribed again and broadcasts flow; the outage is logged."""
    with RedisServer() as redis, caplog.at_level(logging.WARNING, "cable_server.pubsub.redis"):
        server = await on_redis(serve, redis.url)
        clients = [await server.client() for _ in range(3)]
        for client in clients:
            await client.subscribe(ECHO)
        redis.kill()
        with pytest.raises(PubSubError, match="cannot publish"):
            await server.cable.broadcast("echo_x", {"lost": True})
        for client in clients:  # still connected: pings keep coming
            assert (await client.recv(pings=True))["type"] == "ping"
        redis.start()
        async with asyncio.timeout(10):
            while "Redis is back" not in caplog.text:
                await asyncio.sleep(0.05)
        await server.cable.broadcast("echo_x", {"back": True})
        for client in clients:
            assert (await client.recv())["message"] == {"back": True}
        assert "lost the Redis subscriber connection" in caplog.text


async def test_a_server_whose_redis_is_unreachable_exits_with_a_clear_error() -> None:
    """cable-server --pubsub redis://<nothing there>: exits non-zero at once, saying why."""
    from .frontend import free_port
    from .processes import COMMAND, ROOT

    port = free_port()
    process = await asyncio.create_subprocess_exec(
        COMMAND, "--pubsub", f"redis://127.0.0.1:{free_port()}/0", "--port", str(port),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode != 0
    assert b"cannot reach Redis at redis://127.0.0.1:" in output


async def test_a_backend_knows_when_broadcasts_may_not_have_come_back(redis_server: RedisServer) -> None:
    """missed_since: false while the subscriber listens; true while it is down and, once it is
    back, for anything published before it came back (a publisher then delivers locally too)."""
    backend = RedisBackend(redis_server.url, channel_prefix="missed")
    await backend.start(lambda channel, payload: None)
    try:
        before = time.monotonic()
        assert not backend.missed_since(before)
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            await admin.client_kill_filter(_type="pubsub")
        finally:
            await admin.aclose()
        for _ in range(100):  # down, then back
            await asyncio.sleep(0.02)
            if backend.missed_since(before):
                break
        assert backend.missed_since(before)
        for _ in range(100):  # subscribed again
            await asyncio.sleep(0.02)
            if not backend.missed_since(time.monotonic()):
                break
        assert not backend.missed_since(time.monotonic())
        assert backend.missed_since(before)
    finally:
        await backend.stop()
