"""Health checks and Prometheus metrics, served by the CableServer itself on its own port."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cable_server import RedisBackend, Settings
from cable_server.logs import CredentialFilter, redact_query
from cable_server.testing import FakeOpenAI, RedisServer, Reply
from protocol_tests.client import ident

from .chat_helpers import read_answer, room, start_chat
from .conftest import METRICS_SECRET, RunningServer, ServerFactory, start_server
from .fixture_app import create_app

ROOM = ident("EchoChannel", room="observed")


async def get(server: RunningServer, path: str, secret: str = METRICS_SECRET) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(server.http_url + path, headers={"Authorization": f"Bearer {secret}"})


async def scrape(server: RunningServer) -> dict[str, float]:
    """``/metrics`` as ``{'name{label="value"}': value}``."""
    response = await get(server, "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_health_answers_ok_while_the_process_serves(server: RunningServer) -> None:
    """GET /health: 200 {"status":"ok"}, whatever the pub/sub does (liveness)."""
    response = await get(server, "/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_ready_until_the_server_drains(server: RunningServer) -> None:
    """GET /health/ready: 200 while serving; 503 "draining" once clients were told server_restart."""
    response = await get(server, "/health/ready")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    await server.cable.drain()
    response = await get(server, "/health/ready")
    assert response.status_code == 503 and response.json() == {"status": "unavailable", "reason": "draining"}


async def test_ready_is_503_while_redis_is_down_and_200_once_it_is_back(serve: ServerFactory) -> None:
    """On Redis, readiness pings it: killed, 503 naming Redis; restarted, 200 again once the subscriber is back."""
    with RedisServer() as redis:
        cable = create_app(Settings(ping_interval=0.5, shutdown_timeout=1.0))
        cable.set_pubsub(RedisBackend(redis.url, max_backoff=0.1))
        server = await serve(cable)
        assert (await get(server, "/health/ready")).status_code == 200
        redis.kill()
        response = await get(server, "/health/ready")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable" and "Redis" in response.json()["reason"]
        assert (await get(server, "/health")).status_code == 200  # alive all along: do not restart it
        redis.start()
        for _ in range(100):
            if (await get(server, "/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("still not ready 5 s after Redis came back")


async def test_the_paths_are_settings_and_none_turns_an_endpoint_off(serve: ServerFactory) -> None:
    """health_path, ready_path and metrics_path move the endpoints; None serves nothing there."""
    server = await serve(health_path="/livez", ready_path="/readyz", metrics_path=None)
    assert (await get(server, "/livez")).json() == {"status": "ok"}
    assert (await get(server, "/readyz")).json() == {"status": "ok"}
    for gone in ("/health", "/health/ready", "/metrics"):
        assert (await get(server, gone)).status_code == 404


async def test_metrics_are_not_public(serve: ServerFactory) -> None:
    """Without metrics_secret (the default) /metrics is 404; with it, 401 without the bearer or with
    another one, 200 with it."""
    assert Settings().metrics_secret is None
    closed = await start_server(create_app(Settings(shutdown_timeout=1.0)))
    try:
        assert (await get(closed, "/metrics")).status_code == 404
    finally:
        await closed.stop()
    server = await serve(metrics_secret="right")
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.http_url + "/metrics")).status_code == 401
    assert (await get(server, "/metrics", "wrong")).status_code == 401
    assert (await get(server, "/metrics", "right")).status_code == 200
    async with httpx.AsyncClient() as http:  # the scheme in any case (RFC 7235)
        response = await http.get(server.http_url + "/metrics", headers={"Authorization": "bearer right"})
    assert response.status_code == 200


async def test_metrics_count_connections_subscriptions_broadcasts_and_frames(server: RunningServer) -> None:
    """Two clients subscribed, one broadcast: the gauges and counters say so; a closed client leaves the gauges."""
    before = await scrape(server)
    assert before["cable_connections"] == 0 and before["cable_frames_sent_total"] == 0
    alice, bob = await server.client(), await server.client()
    await alice.subscribe(ROOM)
    await bob.subscribe(ROOM)
    await alice.perform(ROOM, "shout", payload="hi")
    assert (await alice.recv())["message"] == "hi" and (await bob.recv())["message"] == "hi"
    metrics = await scrape(server)
    assert metrics["cable_connections"] == 2 and metrics["cable_subscriptions"] == 2
    assert metrics["cable_broadcasts_received_total"] == 1
    assert metrics["cable_frames_sent_total"] >= 6  # per client: welcome, confirmation, the broadcast (and pings)
    await bob.close()
    for _ in range(50):
        metrics = await scrape(server)
        if metrics["cable_connections"] == 1:
            break
        await asyncio.sleep(0.02)
    assert metrics["cable_connections"] == 1 and metrics["cable_subscriptions"] == 1
    assert metrics["cable_frames_sent_total"] >= 6  # bob's frames stay counted after he left


async def test_failures_are_counted_by_category(server: RunningServer) -> None:
    """A malformed frame, an unknown action and an action that raises: cable_errors_total by category."""
    client = await server.client()
    await client.subscribe(ROOM)
    await client.send("{not json")
    await client.perform(ROOM, "no_such_action")
    await client.perform(ROOM, "boom")
    await client.perform(ROOM, "fast")
    assert (await client.recv())["message"] == {"fast": "done"}
    metrics = await scrape(server)
    assert metrics['cable_errors_total{category="protocol"}'] == 1
    assert metrics['cable_errors_total{category="subscription"}'] == 1
    assert metrics['cable_errors_total{category="application"}'] == 1


async def test_every_server_has_its_own_registry(serve: ServerFactory) -> None:
    """Two servers in one process: each /metrics counts its own clients only (no global registry clash)."""
    busy, idle = await serve(), await serve()
    await busy.client()
    assert (await scrape(busy))["cable_connections"] == 1
    assert (await scrape(idle))["cable_connections"] == 0


async def test_generation_metrics(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Active generations while streaming; then outcome, time to first token, duration and error category."""
    chat = await start_chat(serve, fake_openai)
    fake_openai.push(Reply(chunks=["a"] * 10, delay=0.03), Reply.error(401, "Incorrect API key provided."))
    alice = await chat.user("alice")
    await alice.perform(room("alice"), "send_message", user_content="hi")
    await alice.recv()
    assert (await scrape(chat.server))["cable_generations_active"] == 1
    assert (await read_answer(alice, room("alice"))).last["event"] == "done"
    await alice.perform(room("alice"), "send_message", user_content="again")
    assert (await read_answer(alice, room("alice"))).last["error"]["category"] == "auth"
    metrics = await scrape(chat.server)
    assert metrics["cable_generations_active"] == 0
    assert metrics['cable_generations_total{outcome="done"}'] == 1
    assert metrics['cable_generations_total{outcome="error"}'] == 1
    assert metrics['cable_generation_errors_total{category="auth"}'] == 1
    assert metrics["cable_generation_first_token_seconds_count"] == 1
    assert 0 < metrics["cable_generation_first_token_seconds_sum"] < 5
    assert metrics["cable_generation_duration_seconds_count"] == 2


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/cable?token=a.b.c", "/cable?token=[FILTERED]"),
        ("/cable?room=1&sid=abc&name=bob", "/cable?room=1&sid=[FILTERED]&name=bob"),
        (
            "/x?api_key=1&password=2&Authorization=3&otp=4",
            "/x?api_key=[FILTERED]&password=[FILTERED]&Authorization=[FILTERED]&otp=[FILTERED]",
        ),
        ("/cable?name=sidney", "/cable?name=sidney"),
        ("no query here", "no query here"),
    ],
)
def test_secret_query_parameters_are_redacted(target: str, logged: str) -> None:
    """The names Rails filters by default, plus AnyCable's sid: their values never reach a log line."""
    assert redact_query(target) == logged


@pytest.mark.parametrize(
    ("msg", "args", "logged"),
    [
        ("< %s: %s", ("Cookie", "_app_session=abc--def; theme=dark"), "< Cookie: [FILTERED]"),
        ("> %s: %s", ("set-cookie", "cable_demo_guest=id.mac; HttpOnly"), "> set-cookie: [FILTERED]"),
        ("< %s: %s", ("Authorization", "Bearer a.b.c"), "< Authorization: [FILTERED]"),
        ("< %s: %s", ("Origin", "http://127.0.0.1:8000"), "< Origin: http://127.0.0.1:8000"),
        ("%s: %s", ("cookie", "not a header line"), "cookie: not a header line"),
    ],
)
def test_credential_headers_are_redacted_from_handshake_header_lines(msg: str, args: tuple[str, str], logged: str) -> None:
    """websockets logs each handshake header at DEBUG (to uvicorn.error): cookies and tokens come out [FILTERED]."""
    record = logging.LogRecord("uvicorn.error", logging.DEBUG, __file__, 1, msg, args, None)
    assert CredentialFilter().filter(record) and record.getMessage() == logged


async def test_open_connections_statistics(server: RunningServer) -> None:
    """Rails' open_connections_statistics: each welcomed connection's identifier, start time,
    subscription identifiers as sent and X-Request-Id (cleaned as Rails cleans it); closed ones go."""
    before = datetime.now(UTC)
    alice = await server.client("?user=alice", headers={"X-Request-Id": "req-1@proxy <script>;é"})
    spaced = '{ "channel" : "EchoChannel", "room" : "observed" }'
    for identifier in (ROOM, spaced):
        await alice.subscribe(identifier)
    anonymous = await server.client()
    first, second = server.cable.open_connections_statistics()
    assert (first.identifier, first.subscriptions, first.request_id) == ("alice", (ROOM, spaced), "req-1@proxyscript")
    assert (second.identifier, second.subscriptions, second.request_id) == ("", (), None)
    assert before <= first.started_at <= second.started_at <= datetime.now(UTC)
    sessions = {session.connection.log_id: session for session in server.cable.sessions}
    assert sessions.keys() == {first.connection_id, second.connection_id}
    assert sessions[first.connection_id].connection.statistics == first
    await anonymous.close()
    async with asyncio.timeout(2):
        while len(server.cable.open_connections_statistics()) > 1:
            await asyncio.sleep(0.01)
    assert server.cable.open_connections_statistics() == [first]
