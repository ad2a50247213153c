"""The HTTP side of the cable: upgrade, subprotocols, origins, plain requests."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from cable_server import Settings
from protocol_tests.client import CableClient

from .conftest import RunningServer, ServerFactory, start_server
from .fixture_app import create_app


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("actioncable-v1-json", "actioncable-unsupported"), "actioncable-v1-json"),
        (None, None),
        (("foo",), None),
        (("actioncable-unsupported",), "actioncable-unsupported"),
        (("actioncable-unsupported", "actioncable-v1-json"), "actioncable-unsupported"),
        (("actioncable-v1-json", "actioncable-unsupported", "custom-token"), "actioncable-v1-json"),
    ],
)
async def test_subprotocol_is_the_first_supported_one_the_client_offered(
    server: RunningServer, offered: tuple[str, ...] | None, chosen: str | None
) -> None:
    """The 101 names the first client-listed supported subprotocol, or none; welcome is sent either way."""
    client = await server.client(subprotocols=offered)
    assert client.ws.subprotocol == chosen
    assert ("sec-websocket-protocol" in client.ws.response.headers) == (chosen is not None)


async def test_permessage_deflate_is_not_negotiated(server: RunningServer) -> None:
    """A client offering compression gets none, as with Rails."""
    ws = await websockets.connect(server.url, origin=server.origin, subprotocols=["actioncable-v1-json"])  # type: ignore[list-item]
    assert "sec-websocket-extensions" not in ws.response.headers
    assert await ws.recv() == '{"type":"welcome"}'
    await ws.close()


async def test_permessage_deflate_can_be_enabled(serve: ServerFactory) -> None:
    """The per_message_deflate setting turns compression on."""
    running = await serve(per_message_deflate=True)
    ws = await websockets.connect(running.url, origin=running.origin)
    assert "permessage-deflate" in ws.response.headers.get("sec-websocket-extensions", "")
    await ws.close()


async def _refused(url: str, origin: str | None) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        await websockets.connect(url, origin=origin)  # type: ignore[arg-type]
    return refused.value


@pytest.mark.parametrize("origin", ["http://evil.example", None, "https://127.0.0.1"])
async def test_disallowed_origin_gets_404_page_not_found(server: RunningServer, origin: str | None) -> None:
    """A foreign, missing or wrong-scheme Origin is answered 404 'Page not found' before any upgrade."""
    response = (await _refused(server.url, origin)).response
    assert response.status_code == 404
    assert response.body == b"Page not found"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


async def test_same_origin_as_host_is_allowed(server: RunningServer) -> None:
    """Origin http://<Host header> is accepted by default."""
    client = await server.client(origin=f"http://127.0.0.1:{server.port}")
    await client.close()


async def test_configured_origins_and_patterns_are_allowed(serve: ServerFactory) -> None:
    """allowed_origins accepts exact strings and full-match patterns; others stay refused."""
    import re

    running = await serve(allowed_origins=("https://app.example", re.compile(r"https?://localhost:\d+")))
    for origin in ("https://app.example", "http://localhost:3000"):
        await (await running.client(origin=origin)).close()
    assert (await _refused(running.url, "http://localhost:3000.evil.example")).response.status_code == 404


async def test_disabled_origin_check_allows_a_missing_origin(serve: ServerFactory) -> None:
    """disable_origin_check accepts clients that send no Origin (e.g. some Python clients)."""
    running = await serve(disable_origin_check=True)
    await (await running.client(origin=None, subprotocols=None)).close()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_plain_http_to_the_cable_path_is_404(server: RunningServer, method: str) -> None:
    """A non-upgrade request to /cable gets Rails' 404 'Page not found'."""
    async with httpx.AsyncClient() as http:
        response = await http.request(method, f"{server.http_url}/cable")
    assert response.status_code == 404
    assert response.text == "Page not found"
    assert response.headers["content-type"] == "text/plain; charset=utf-8"


async def test_cable_is_mounted_by_prefix_with_query_string(server: RunningServer) -> None:
    """/cable/foo?user=a is served like /cable, and the query reaches connect()."""
    client = await CableClient.connect(f"ws://127.0.0.1:{server.port}/cable/foo?user=alice", origin=server.origin)
    await client.subscribe('{"channel":"EchoChannel"}')
    await client.perform('{"channel":"EchoChannel"}', "ping_user")
    assert (await client.recv())["message"] == {"user": "alice"}


async def test_other_paths_are_not_the_cable(server: RunningServer) -> None:
    """Without an app, paths outside the mount are plain 404s and refuse WebSockets."""
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.http_url}/elsewhere")).status_code == 404
    with pytest.raises(InvalidStatus):
        await websockets.connect(f"ws://127.0.0.1:{server.port}/cablex", origin=server.origin)


@pytest.fixture(params=["cable", "websockets-sansio"])
async def either_path(request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    """One connection per address, served by our uvicorn protocol or by stock uvicorn (plain ASGI)."""
    cable = create_app(Settings(ping_interval=0.5, shutdown_timeout=1.0, max_connections_per_address=1))
    server = await start_server(cable, ws=None if request.param == "cable" else request.param)
    yield server
    await server.stop()


async def test_refusals_before_the_upgrade_are_logged_once_and_never_as_errors(
    either_path: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused Origin and a plain HTTP request: one info record each on our logger, with the
    reason; one connection too many: its limit warning. uvicorn adds no ERROR (it logged
    "returned without completing handshake" for every denial response)."""
    server = either_path
    caplog.set_level(logging.INFO)
    assert (await _refused(server.url, "http://evil.example")).response.status_code == 404
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.http_url}/cable")).status_code == 404
    client = await server.client()
    assert (await _refused(server.url, server.origin)).response.status_code == 429
    await client.close()
    async with asyncio.timeout(5):  # every ASGI task has returned: uvicorn has logged what it would
        while server.uvicorn.server_state.tasks:
            await asyncio.sleep(0.01)
    ours = [r for r in caplog.records if r.name.startswith("cable_server") and r.getMessage().startswith("refused")]
    assert [r.levelno for r in ours] == [logging.INFO, logging.INFO, logging.WARNING], [r.getMessage() for r in ours]
    assert ours[0].getMessage().startswith("refused origin 'http://evil.example'")
    assert ours[1].getMessage().startswith("refused GET '/cable' from 127.0.0.1: not a WebSocket upgrade")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
