"""The acceptance test of the project: the blog's frontend, verbatim, against ``cable-server`` as shipped.

``examples/vue2`` is the blog's Vue 2 + actioncable-vue 2 frontend as published
(``connectionUrl: wss://<host>/cable`` with nothing appended, ``room: this.user_id``,
``received(data)`` appends ``data.content``); ``examples/vue3`` is the same written for Vue 3 +
actioncable-vue 3. Each is built with npm and driven in headless Chromium against the
``cable-server`` command with no app argument and a model from ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL`` (the fake OpenAI): served over TLS by cable-server itself, through the
repo's ``nginx.conf``, and by two workers sharing Redis. The text on screen must equal the
upstream answer exactly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, WebSocket

from cable_server.testing import FakeOpenAI, RedisServer, Reply
from protocol_tests.client import CableClient, ident

from .chat_helpers import read_answer
from .frontend import EXAMPLES, NginxFactory, npm_build, screenshot
from .processes import Launcher

#: Korean, spaces kept as sent, a line break and an emoji: rendered exactly as the model wrote it.
ANSWER = Reply(chunks=["안녕", "하세요", "! ", "Streaming", "  works", " ✓\n", "끝."], delay=0.02)
QUESTION = "블로그 프론트엔드가 그대로 동작하나요?"
ROOM = ident("GptChatChannel", room=42)  # the blog's user_id


@pytest.fixture(scope="session", params=["vue2", "vue3"])
def blog(request: pytest.FixtureRequest) -> Path:
    """The built frontend: the blog's Vue 2 one, then the same written for Vue 3."""
    return npm_build(EXAMPLES / request.param)


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(ignore_https_errors=True)  # the test's self-signed certificate
    yield context
    await context.close()


def model_env(fake: FakeOpenAI, static: Path) -> dict[str, str]:
    """What a user sets to serve the blog: a model, and the folder of the built frontend."""
    return {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake.url, "CABLE_DEMO_STATIC": str(static)}


async def open_blog(context: BrowserContext, origin: str) -> tuple[Page, WebSocket]:
    """Load the page; returns once its cable confirmed the subscription (the page itself shows nothing)."""
    page = await context.new_page()
    confirmed = asyncio.get_running_loop().create_future()
    sockets: list[WebSocket] = []

    def watch(socket: WebSocket) -> None:
        sockets.append(socket)

        def frame(payload: str | bytes) -> None:
            if '"confirm_subscription"' in str(payload) and not confirmed.done():
                confirmed.set_result(None)

        socket.on("framereceived", frame)

    page.on("websocket", watch)
    await page.goto(origin + "/")
    await asyncio.wait_for(confirmed, 15)
    return page, sockets[0]


async def ask(page: Page, question: str) -> str:
    """Type the question, press the button, and return the answer once it is on screen in full."""
    await page.locator("textarea").nth(1).fill(question)
    await page.get_by_role("button").click()
    await page.wait_for_function(
        "text => document.querySelector('.answer').textContent === text", arg=ANSWER.text, timeout=15_000
    )
    return await page.locator(".answer").text_content() or ""


async def chat_through_the_blog(context: BrowserContext, origin: str, fake: FakeOpenAI, name: str) -> Page:
    """The whole user story: open the page, ask, see the answer type itself; checks what went where."""
    fake.push(ANSWER)
    page, socket = await open_blog(context, origin)
    host = origin.split("://", 1)[1]
    assert socket.url == f"wss://{host}/cable"  # nothing appended: anonymous
    assert await ask(page, QUESTION) == ANSWER.text
    request = fake.requests[-1]
    assert request.messages == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": QUESTION},
    ]
    await screenshot(page, name)
    return page


async def test_the_blogs_frontend_streams_from_cable_server_over_wss(
    launch: Launcher, fake_openai: FakeOpenAI, blog: Path, context: BrowserContext
) -> None:
    """`cable-server --ssl-certfile --ssl-keyfile` (no app argument) serves the built blog and its
    wss://<host>/cable; the answer streams into room 42 and reads exactly as the model wrote it."""
    server = await launch("--log-level", "warning", env=model_env(fake_openai, blog), tls=True)
    await chat_through_the_blog(context, server.origin, fake_openai, f"blog-{blog.parent.name}-direct")


async def test_the_blogs_frontend_streams_through_nginx_over_wss(
    launch: Launcher, fake_openai: FakeOpenAI, blog: Path, context: BrowserContext, nginx: NginxFactory
) -> None:
    """The repo's nginx.conf terminates TLS and serves the built blog; cable-server behind it on HTTP."""
    server = await launch("--log-level", "warning", env=model_env(fake_openai, blog))
    proxy = await nginx(server.port, blog)
    await chat_through_the_blog(context, proxy.url("https"), fake_openai, f"blog-{blog.parent.name}-nginx")


async def test_the_blogs_frontend_streams_from_two_workers_sharing_redis(
    launch: Launcher, fake_openai: FakeOpenAI, blog: Path, context: BrowserContext, redis_server: RedisServer
) -> None:
    """`cable-server --workers 2 --pubsub redis://`: the blog's answer reaches the page, and every other
    subscriber of room 42, whichever worker holds it (four raw clients: all on the page's worker 1 time in 16)."""
    prefix = f"blog-{blog.parent.name}"
    server = await launch(
        "--workers", "2", "--pubsub", redis_server.url, "--channel-prefix", prefix, "--log-level", "warning",
        env=model_env(fake_openai, blog),
        tls=True,
    )  # fmt: skip
    await server.healthy()
    watchers: list[CableClient] = []
    for _ in range(4):
        watcher = await server.client()
        await watcher.subscribe(ROOM)
        watchers.append(watcher)
    await chat_through_the_blog(context, server.origin, fake_openai, f"blog-{blog.parent.name}-workers")
    for watcher in watchers:
        assert (await read_answer(watcher, ROOM, timeout=10)).text == ANSWER.text
