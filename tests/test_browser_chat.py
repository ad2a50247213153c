"""The Vue chat (examples/vue-chat, actioncable-vue) in headless Chromium: direct, and through nginx over ws:// and wss://."""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from cable_server import CableServer, Settings
from cable_server.demo import create_app
from cable_server.llm import ChatSettings
from cable_server.testing import FakeOpenAI, Reply

from .conftest import RunningServer, ServerFactory
from .frontend import NginxFactory, screenshot
from .proxy import cuttable_proxy

WORDS = Reply(chunks=[f"word{k} " for k in range(40)], delay=0.02)
SLOW = Reply(chunks=[f"slow{k} " for k in range(400)], delay=0.02)

# Records the last answer's text after every DOM change, to check it only ever grows.
SNAPSHOTS = """
window.__snapshots = [];
new MutationObserver(() => {
  const answers = document.querySelectorAll('[data-role=assistant] .markdown');
  if (answers.length) window.__snapshots.push(answers[answers.length - 1].textContent);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


@dataclass
class Site:
    """The chat app as the browser reaches it, and the cable-server behind it."""

    url: str
    backend: RunningServer
    serve: ServerFactory
    fake: FakeOpenAI

    def app(self) -> CableServer:
        cable = create_app(ChatSettings(api_key="sk-test", base_url=self.fake.url, max_retries=0))
        cable.settings = Settings(shutdown_timeout=1.0)
        return cable

    async def restart_backend(self) -> None:
        """Stop the server (clients get server_restart) and start a new one on the same port."""
        port = self.backend.port
        await self.backend.stop()
        self.backend = await self.serve(self.app(), port=port)


@pytest.fixture(params=["direct", "nginx-ws", "nginx-wss"])
async def site(
    request: pytest.FixtureRequest, serve: ServerFactory, fake_openai: FakeOpenAI, vue_chat_dist: Path, nginx: NginxFactory
) -> Site:
    placeholder = Site("", None, serve, fake_openai)  # type: ignore[arg-type]
    backend = await serve(placeholder.app())
    site = Site(backend.http_url, backend, serve, fake_openai)
    if request.param != "direct":
        proxy = await nginx(backend.port, vue_chat_dist)
        site.url = proxy.url("https" if request.param == "nginx-wss" else "http")
    return site


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(ignore_https_errors=True)  # the test's self-signed certificate
    await context.add_init_script(SNAPSHOTS)
    yield context
    await context.close()


class ChatPage:
    def __init__(self, page: Page) -> None:
        self.page = page
        self.state = page.locator("[data-role=state]")
        self.answers = page.locator("[data-role=assistant]")

    @classmethod
    async def open(cls, context: BrowserContext, url: str) -> ChatPage:
        page = await context.new_page()
        await page.goto(url + "/")
        chat = cls(page)
        await expect(chat.state).to_have_text("live", timeout=10_000)
        return chat

    async def ask(self, text: str) -> None:
        await self.page.locator("[data-role=draft]").fill(text)
        await self.page.locator("[data-role=draft]").press("Enter")

    async def answer(self, index: int, status: str = "done") -> str:
        """The text of answer ``index`` once its status is ``status``."""
        answer = self.answers.nth(index)
        await expect(answer).to_have_attribute("data-status", status, timeout=20_000)
        return await answer.locator(".markdown").inner_text()


def words(text: str) -> list[str]:
    return text.split()


async def test_a_prompt_streams_into_the_page_in_order(
    site: Site, context: BrowserContext, request: pytest.FixtureRequest
) -> None:
    """The answer renders word by word, only ever growing, and ends equal to what upstream sent."""
    site.fake.push(WORDS)
    chat = await ChatPage.open(context, site.url)
    await chat.ask("Count for me")
    assert words(await chat.answer(0)) == words(WORDS.text)
    snapshots: list[str] = await chat.page.evaluate("window.__snapshots")
    assert len(snapshots) > 10, "the answer arrived in one piece instead of streaming"
    for earlier, later in itertools.pairwise(snapshots):
        assert later.strip().startswith(earlier.strip())
    assert site.fake.requests[0].messages[-1] == {"role": "user", "content": "Count for me"}
    await screenshot(chat.page, f"vue-chat-{request.node.callspec.id}")


async def test_stop_ends_the_answer_and_the_upstream_request(site: Site, context: BrowserContext) -> None:
    """Stop mid-answer: the turn says stopped, the Stop button goes, upstream saw the stream closed."""
    site.fake.push(SLOW)
    chat = await ChatPage.open(context, site.url)
    await chat.ask("Tell me everything")
    await expect(chat.answers.nth(0)).to_contain_text("slow3", timeout=10_000)
    await chat.page.locator("[data-role=stop]").click()
    partial = await chat.answer(0, "stopped")
    assert 0 < len(words(partial)) < len(SLOW.chunks)
    await expect(chat.page.locator("[data-role=stop]")).to_have_count(0)
    upstream = site.fake.requests[0]
    await asyncio.wait_for(upstream.ended.wait(), 5)
    assert upstream.closed_early


async def test_an_upstream_error_is_shown_in_place(site: Site, context: BrowserContext) -> None:
    """A 429 from the provider appears under the answer it ended, and the next prompt works."""
    site.fake.push(Reply.error(429, "Rate limit reached for requests."), Reply(chunks=["fine", " now"]))
    chat = await ChatPage.open(context, site.url)
    await chat.ask("Hello?")
    await expect(chat.answers.nth(0).locator("[data-role=error]")).to_contain_text("Rate limit reached", timeout=10_000)
    await chat.ask("Again?")
    assert await chat.answer(1) == "fine now"


async def test_two_tabs_of_one_user_both_see_the_answer(site: Site, context: BrowserContext) -> None:
    """Two tabs share the user (and room): an answer asked in one streams into both."""
    site.fake.push(WORDS)
    first = await ChatPage.open(context, site.url)
    second = await ChatPage.open(context, site.url)
    await first.ask("Both of you")
    assert words(await first.answer(0)) == words(WORDS.text)
    assert words(await second.answer(0)) == words(WORDS.text)


async def test_the_app_reconnects_after_a_server_restart(site: Site, context: BrowserContext) -> None:
    """Restart the server: the page shows reconnecting, comes back live, and streams again."""
    site.fake.push(Reply(chunks=["before"]), Reply(chunks=["after", " restart"]))
    chat = await ChatPage.open(context, site.url)
    await chat.ask("one")
    assert await chat.answer(0) == "before"
    await site.restart_backend()
    await expect(chat.state).to_have_text(re.compile("reconnecting|live"), timeout=10_000)
    await expect(chat.state).to_have_text("live", timeout=20_000)
    await chat.ask("two")
    assert await chat.answer(1) == "after restart"


async def test_a_cut_connection_mid_answer_still_shows_the_whole_answer(
    serve: ServerFactory, fake_openai: FakeOpenAI, vue_chat_dist: Path, context: BrowserContext
) -> None:
    """The TCP connection dies mid-answer: the app reconnects by itself, resumes, and shows every word once."""
    placeholder = Site("", None, serve, fake_openai)  # type: ignore[arg-type]
    backend = await serve(placeholder.app())
    answer = Reply(chunks=[f"part{k} " for k in range(120)], delay=0.02)
    fake_openai.push(answer)
    async with cuttable_proxy(backend.port) as proxy:
        chat = await ChatPage.open(context, f"http://127.0.0.1:{proxy.port}")
        await chat.ask("A long one, please")
        await expect(chat.answers.nth(0)).to_contain_text("part10", timeout=10_000)
        proxy.cut()
        await expect(chat.state).to_have_text("reconnecting", timeout=10_000)
        assert words(await chat.answer(0)) == words(answer.text)  # waits for done, after the reconnect
        await expect(chat.state).to_have_text("live")
        await screenshot(chat.page, "vue-chat-resumed")
