"""The HTTP upgrade: subprotocols, extensions, Origin checks, the mount path, refusals."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import pytest
import websockets

from .client import CableClient
from .conftest import ALLOWED_ORIGIN, Connect, Target


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (("actioncable-v1-json", "actioncable-unsupported"), "actioncable-v1-json"),
        (("actioncable-unsupported", "actioncable-v1-json"), "actioncable-unsupported"),
        (("actioncable-unsupported",), "actioncable-unsupported"),
        (("actioncable-v1-json", "actioncable-unsupported", "custom-token"), "actioncable-v1-json"),
        (("foo",), None),
        (None, None),
    ],
    ids=["both", "client-order", "only-unsupported", "with-custom-token", "only-unknown", "none"],
)
async def test_subprotocol_is_the_first_client_offer_the_server_knows(
    connect: Connect, offered: tuple[str, ...] | None, chosen: str | None
) -> None:
    """The chosen subprotocol is the client's first known offer (none if none), and welcome follows."""
    client = await connect(subprotocols=offered, welcome=False)
    assert client.ws.subprotocol == chosen
    assert client.ws.response is not None
    assert client.ws.response.headers.get("Sec-WebSocket-Protocol") == chosen
    assert await client.recv_raw() == '{"type":"welcome"}'


@pytest.mark.differs("ext_protocol")
async def test_anycable_extended_protocol(connect: Connect, rails_way: bool) -> None:
    """Offered first, actioncable-v1-ext-json is chosen here (welcome with a sid); Rails picks v1-json."""
    client = await connect(subprotocols=("actioncable-v1-ext-json", "actioncable-v1-json"), welcome=False)
    welcome = await client.recv()
    if rails_way:
        assert client.ws.subprotocol == "actioncable-v1-json" and welcome == {"type": "welcome"}
    else:
        assert client.ws.subprotocol == "actioncable-v1-ext-json"
        assert welcome["type"] == "welcome" and isinstance(welcome["sid"], str) and welcome["sid"]


async def test_welcome_is_one_18_byte_text_frame(connect: Connect) -> None:
    """The first frame is exactly {"type":"welcome"}."""
    client = await connect(welcome=False)
    frame = await client.ws.recv()
    assert frame == '{"type":"welcome"}' and len(frame.encode()) == 18


async def test_permessage_deflate_is_not_negotiated(target: Target) -> None:
    """An offered permessage-deflate is declined: no Sec-WebSocket-Extensions in the answer."""
    ws = await websockets.connect(
        target.cable_url,
        origin=ALLOWED_ORIGIN,
        subprotocols=["actioncable-v1-json"],
        compression="deflate",  # type: ignore[list-item]
    )
    try:
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
    finally:
        await ws.close()


async def refused(target: Target, origin: str | None, path: str = "") -> websockets.InvalidStatus:
    with pytest.raises(websockets.InvalidStatus) as info:
        await CableClient.connect(target.cable_url + path, origin=origin, welcome=False)
    return info.value


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:3001", "https://localhost:3000"])
async def test_disallowed_origin_gets_404_page_not_found(target: Target, origin: str) -> None:
    """An Origin not allowed gets HTTP 404 with the body "Page not found", and no upgrade."""
    error = await refused(target, origin)
    assert error.response.status_code == 404
    assert error.response.body == b"Page not found"


async def test_missing_origin_is_refused(target: Target) -> None:
    """No Origin header at all is refused like a foreign one (404)."""
    error = await refused(target, None)
    assert error.response.status_code == 404


async def test_same_origin_as_host_is_allowed(connect: Connect, target: Target) -> None:
    """Origin http://<Host header> is allowed without configuration."""
    client = await connect(origin=f"http://{target.host}", welcome=False)
    assert await client.recv_raw() == '{"type":"welcome"}'


async def test_configured_pattern_admits_a_matching_origin(connect: Connect) -> None:
    """An Origin matching a configured pattern is allowed."""
    await connect(origin="http://allowed.example")


@pytest.mark.differs("origin_patterns")
async def test_pattern_matching_only_part_of_the_origin(target: Target, connect: Connect, rails_way: bool) -> None:
    """A pattern matching only a prefix of the Origin: Rails admits it, we refuse it."""
    if rails_way:
        await connect(origin="http://allowed.example.evil.com")
    else:
        assert (await refused(target, "http://allowed.example.evil.com")).response.status_code == 404


@pytest.mark.differs("not_found_content_type")
async def test_refusal_content_type(target: Target, rails_way: bool) -> None:
    """The 404 is text/plain (Rails 7.1+: with charset=utf-8)."""
    error = await refused(target, "http://evil.example")
    expected = "text/plain" if rails_way else "text/plain; charset=utf-8"
    assert error.response.headers["Content-Type"] == expected


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_plain_http_to_the_cable_path_is_404(target: Target, method: str) -> None:
    """A request without the WebSocket upgrade gets 404 Page not found."""
    async with httpx.AsyncClient() as http:
        response = await http.request(method, f"{target.http_url}/cable", headers={"Origin": ALLOWED_ORIGIN})
    assert response.status_code == 404
    assert response.text == "Page not found"


async def test_cable_is_mounted_as_a_prefix(connect: Connect) -> None:
    """/cable/anything?x=1 upgrades like /cable (a Rack mount matches by prefix)."""
    await connect(path="/foo?x=1")


@pytest.mark.differs("handshake_headers")
@pytest.mark.parametrize(("missing", "rails_status"), [("Sec-WebSocket-Key", 500), ("Sec-WebSocket-Version", 101)])
async def test_an_upgrade_without_a_required_header(target: Target, rails_way: bool, missing: str, rails_status: int) -> None:
    """Without Sec-WebSocket-Key Rails answers 500, without Sec-WebSocket-Version a draft-75
    101 (no client can use either); we answer 400."""
    url = urlsplit(target.cable_url)
    headers = {
        "Host": url.netloc,
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Origin": ALLOWED_ORIGIN,
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    del headers[missing]
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        lines = [f"GET {url.path} HTTP/1.1", *(f"{name}: {value}" for name, value in headers.items()), "", ""]
        writer.write("\r\n".join(lines).encode())
        status_line = await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()
    if rails_way:
        expected = "HTTP/1.1 101 Web Socket Protocol Handshake" if rails_status == 101 else "HTTP/1.1 500 Internal Server Error"
    else:
        expected = "HTTP/1.1 400 Bad Request"
    assert status_line.decode().rstrip() == expected
