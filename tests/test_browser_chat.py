"""The Vue chat (examples/vue-chat, actioncable-vue) in headless Chromium: direct, and through nginx over ws:// and wss://
(streaming and reconnecting; what does not depend on the way there, Stop, errors, two tabs, directly)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, expect

from cable_server.testing import FakeOpenAI, Reply

from .chat_page import SLOW, WORDS, ChatPage, DemoFactory, Site, words
from .frontend import NginxFactory, screenshot
from .proxy import cuttable_proxy


@pytest.fixture(params=["direct", "nginx-ws", "nginx-wss"])
async def site(request: pytest.FixtureRequest, demo: DemoFactory, vue_chat_dist: Path, nginx: NginxFactory) -> Site:
    site = await demo()
    if request.param != "direct":
        proxy = await nginx(site.backend.port, vue_chat_dist)
        site.url = proxy.url("https" if request.param == "nginx-wss" else "http")
    return site


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


async def test_stop_ends_the_answer_and_the_upstream_request(demo: DemoFactory, context: BrowserContext) -> None:
    """Stop mid-answer: the turn says stopped, the Stop button goes, upstream saw the stream closed."""
    site = await demo()
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


async def test_an_upstream_error_is_shown_in_place(demo: DemoFactory, context: BrowserContext) -> None:
    """A 429 from the provider appears under the answer it ended, in the user's words (not the
    provider's message, which can name keys and organisations), and the next prompt works."""
    site = await demo()
    site.fake.push(Reply.error(429, "Rate limit reached for requests in org-secret."), Reply(chunks=["fine", " now"]))
    chat = await ChatPage.open(context, site.url)
    await chat.ask("Hello?")
    error = chat.answers.nth(0).locator("[data-role=error]")
    await expect(error).to_have_text("The model is getting too many requests right now. Try again in a moment.", timeout=10_000)
    await expect(chat.page.locator("body")).not_to_contain_text("org-secret")
    await chat.ask("Again?")
    assert await chat.answer(1) == "fine now"


async def test_two_tabs_of_one_user_both_see_the_answer(demo: DemoFactory, context: BrowserContext) -> None:
    """Two tabs share the user (and room): an answer asked in one streams into both."""
    site = await demo()
    site.fake.push(WORDS)
    first = await ChatPage.open(context, site.url)
    second = await ChatPage.open(context, site.url)
    await first.ask("Both of you")
    assert words(await first.answer(0)) == words(WORDS.text)
    assert words(await second.answer(0)) == words(WORDS.text)


async def test_the_conversation_is_this_browsers_alone(demo: DemoFactory, context: BrowserContext, browser: Browser) -> None:
    """The server's guest cookie (HttpOnly: no script reads it) keeps the conversation across a reload;
    another browser given the same user id (every request line logs it, as ?name=) finds its room empty."""
    site = await demo()
    site.fake.push(Reply(chunks=["private", " answer"]), Reply(chunks=["intruder's", " answer"]))
    chat = await ChatPage.open(context, site.url)
    await chat.ask("my private question")
    assert await chat.answer(0) == "private answer"
    [cookie] = [c for c in await context.cookies() if c["name"] == "cable_demo_guest"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"] and cookie["path"] == "/"
    assert await chat.page.evaluate("document.cookie") == ""
    user_id = await chat.page.evaluate("localStorage.getItem('cable-chat-user')")
    await chat.page.reload()
    await expect(chat.state).to_have_text("live", timeout=10_000)
    await expect(chat.questions).to_have_text(["my private question"])

    other = await browser.new_context()
    try:
        await other.add_init_script(f"localStorage.setItem('cable-chat-user', {json.dumps(user_id)})")
        intruder = await ChatPage.open(other, site.url)
        assert await intruder.page.evaluate("localStorage.getItem('cable-chat-user')") == user_id
        await intruder.ask("what did they ask?")
        assert await intruder.answer(0) == "intruder's answer"  # its first answer: nothing of theirs before it
        await expect(intruder.questions).to_have_text(["what did they ask?"])
    finally:
        await other.close()
    await expect(chat.questions).to_have_text(["my private question"])


@pytest.mark.parametrize("site", ["nginx-ws", "nginx-wss"], indirect=True)  # directly: test_browser_chat_robustness
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
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """The TCP connection dies mid-answer: the app reconnects by itself, resumes, and shows every word once."""
    backend = (await demo()).backend
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
