"""The demo chat (examples/vue-chat) as a browser test sees it: the site behind it, and the page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from cable_server import CableServer, Settings
from cable_server.demo import create_app
from cable_server.llm import ChatSettings
from cable_server.testing import FakeOpenAI, Reply

if TYPE_CHECKING:
    from .conftest import RunningServer, ServerFactory

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
    """The chat app as the browser reaches it, and the cable-server behind it (the demo app, in process)."""

    url: str
    backend: RunningServer
    serve: ServerFactory
    fake: FakeOpenAI
    settings: dict[str, Any]

    @classmethod
    async def start(cls, serve: ServerFactory, fake: FakeOpenAI, **settings: Any) -> Site:
        """The demo app on ``fake``, with ``settings`` for its chat service."""
        site = cls("", None, serve, fake, settings)  # type: ignore[arg-type]
        site.backend = await serve(site.app())
        site.url = site.backend.http_url
        return site

    def app(self) -> CableServer:
        options: dict[str, Any] = {"api_key": "sk-test", "base_url": self.fake.url, "max_retries": 0}
        cable = create_app(ChatSettings(**{**options, **self.settings}))
        cable.settings = Settings(shutdown_timeout=1.0)
        return cable

    async def restart_backend(self) -> None:
        """Stop the server (clients get server_restart) and start a new one on the same port."""
        port = self.backend.port
        await self.backend.stop()
        self.backend = await self.serve(self.app(), port=port)


DemoFactory = Callable[..., Awaitable[Site]]


@pytest.fixture
def demo(serve: ServerFactory, fake_openai: FakeOpenAI, vue_chat_dist: Path) -> DemoFactory:
    """``await demo(**chat_settings)``: the demo app, serving the freshly built Vue chat, on ``fake_openai``."""

    async def start(**settings: Any) -> Site:
        return await Site.start(serve, fake_openai, **settings)

    return start


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
        self.questions = page.locator("[data-role=user] .text")
        self.draft = page.locator("[data-role=draft]")

    @classmethod
    async def open(cls, context: BrowserContext, url: str) -> ChatPage:
        page = await context.new_page()
        await page.goto(url + "/")
        chat = cls(page)
        await expect(chat.state).to_have_text("live", timeout=10_000)
        return chat

    async def ask(self, text: str) -> None:
        await self.draft.fill(text)
        await self.draft.press("Enter")

    async def answer(self, index: int, status: str = "done", timeout: float = 20_000) -> str:
        """The text of answer ``index`` once its status is ``status``."""
        answer = self.answers.nth(index)
        await expect(answer).to_have_attribute("data-status", status, timeout=timeout)
        return await answer.locator(".markdown").inner_text()


def words(text: str) -> list[str]:
    return text.split()
