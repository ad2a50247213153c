"""The demo chat never gets stuck and never drops a message (headless Chromium, the built Vue app).

Each test is a way a user broke it before: a reload mid-answer, a server restart or crash
mid-answer, a message sent into a network that died without a word, a question too long for
the server, Enter pressed to commit an input method's composition.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import BrowserContext, expect

from cable_server.testing import FakeOpenAI, Reply

from .chat_page import ChatPage, DemoFactory, Site, words
from .processes import Launcher
from .proxy import cuttable_proxy

LONG = Reply(chunks=[f"part{k} " for k in range(150)], delay=0.02)


@contextlib.asynccontextmanager
async def asked_into_a_dead_network(site: Site, context: BrowserContext, question: str) -> AsyncIterator[ChatPage]:
    """The chat reached through a proxy whose connection then dies without a word, and ``question``
    asked into it (shown as sending); new connections get through."""
    async with cuttable_proxy(site.backend.port) as proxy:
        chat = await ChatPage.open(context, f"http://127.0.0.1:{proxy.port}")
        proxy.stall()
        await chat.ask(question)
        await expect(chat.page.locator("[data-role=sending]")).to_be_visible()
        yield chat


async def test_a_reload_mid_answer_shows_the_question_and_the_whole_answer(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """Reload while the answer streams: the question is back, the answer goes on from where the page
    is to its end with every word once, and a tab opened meanwhile shows the same; the next question works."""
    site = await demo()
    fake_openai.push(LONG, Reply(chunks=["next", " one"]))
    chat = await ChatPage.open(context, site.url)
    await chat.ask("A long one, please")
    await expect(chat.answers.nth(0)).to_contain_text("part10", timeout=10_000)
    await chat.page.reload()
    second = await ChatPage.open(context, site.url)
    for page in (chat, second):
        await expect(page.questions).to_have_text(["A long one, please"], timeout=10_000)
        assert words(await page.answer(0)) == words(LONG.text)
    await chat.ask("And now?")
    assert await chat.answer(1) == "next one"
    await expect(chat.questions).to_have_text(["A long one, please", "And now?"])


async def test_a_server_shutdown_mid_answer_ends_it_as_interrupted_with_retry(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """SIGTERM (a deploy) mid-answer: the answer ends "interrupted: the server restarted", the page
    comes back live, Send works again, and Retry asks the same question."""
    site = await demo()
    fake_openai.push(LONG, Reply(chunks=["second", " try"]))
    chat = await ChatPage.open(context, site.url)
    await chat.ask("Will it survive?")
    await expect(chat.answers.nth(0)).to_contain_text("part5", timeout=10_000)
    await site.restart_backend()
    await chat.answer(0, "stopped")
    await expect(chat.answers.nth(0).locator("[data-role=ending]")).to_have_text("Interrupted: the server restarted.")
    await expect(chat.state).to_have_text("live", timeout=20_000)
    await chat.answers.nth(0).locator("[data-role=retry]").click()
    assert await chat.answer(1) == "second try"
    assert fake_openai.requests[1].messages[-1] == {"role": "user", "content": "Will it survive?"}


async def test_a_server_crash_mid_answer_ends_it_as_interrupted(
    launch: Launcher, fake_openai: FakeOpenAI, vue_chat_dist: Path, context: BrowserContext
) -> None:
    """kill -9 mid-answer, then the server starts again with nothing of it: the answer ends
    "interrupted" instead of "writing" forever, Retry streams a new one, and New conversation clears."""
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake_openai.url, "CABLE_LLM_MAX_RETRIES": "0"}
    env["CABLE_DEMO_STATIC"] = str(vue_chat_dist)
    server = await launch("--log-level", "warning", env=env)
    fake_openai.push(LONG, Reply(chunks=["after", " the", " crash"]))
    chat = await ChatPage.open(context, server.origin)
    await chat.ask("Crash test")
    await expect(chat.answers.nth(0)).to_contain_text("part5", timeout=10_000)
    server.process.kill()
    await server.process.wait()
    await expect(chat.state).not_to_have_text("live", timeout=10_000)
    await launch("--log-level", "warning", env=env, port=server.port)
    await chat.answer(0, "interrupted", timeout=30_000)
    await expect(chat.answers.nth(0).locator("[data-role=ending]")).to_contain_text("Interrupted")
    await chat.answers.nth(0).locator("[data-role=retry]").click()
    assert await chat.answer(1) == "after the crash"
    await chat.page.locator("[data-role=reset]").click()
    await chat.page.locator("[data-role=confirm-reset]").click()
    await expect(chat.page.locator("[data-role=empty]")).to_be_visible()
    await expect(chat.page.locator("[data-role=send]")).to_be_visible()


async def test_a_message_sent_into_a_dead_network_is_delivered_after_the_reconnect(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """The network dies without a word (the badge still says live): the message shows "Sending…",
    and once the app notices and reconnects it is sent again and answered, once."""
    fake_openai.push(Reply(chunks=["made", " it"]))
    async with asked_into_a_dead_network(await demo(), context, "Anyone there?") as chat:
        await expect(chat.state).to_have_text("live")
        assert await chat.answer(0, timeout=40_000) == "made it"
        await expect(chat.questions).to_have_text(["Anyone there?"])
        await expect(chat.page.locator("[data-role=sending]")).to_have_count(0)
    assert len(fake_openai.requests) == 1


async def test_a_message_whose_acknowledgement_was_lost_is_answered_once(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """The message reaches the server but nothing comes back: after the reconnect the app sends it
    again, and the server, knowing its request_id, replays the answer it started instead of a second one."""
    site = await demo()
    fake_openai.push(Reply(chunks=[f"once{k} " for k in range(20)]), Reply(chunks=["a second answer"]))
    async with cuttable_proxy(site.backend.port) as proxy:
        chat = await ChatPage.open(context, f"http://127.0.0.1:{proxy.port}")
        proxy.stall(upstream=False)
        await chat.ask("Only once")
        await fake_openai.wait_for_requests(1)
        assert words(await chat.answer(0, timeout=40_000)) == [f"once{k}" for k in range(20)]
        await expect(chat.answers).to_have_count(1)
    assert len(fake_openai.requests) == 1


async def test_a_question_over_the_limit_is_refused_before_it_is_sent(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """1.2 MB pasted (the server would close the connection with 1009): Send is disabled, the page
    says why, Enter sends nothing, the draft stays, and the connection stays live."""
    site = await demo()
    chat = await ChatPage.open(context, site.url)
    huge = "x" * 1_200_000
    await chat.draft.fill(huge)
    await expect(chat.page.locator("[data-role=limit]")).to_contain_text("Too long to send: 1,200,000 of at most 32,000")
    await expect(chat.page.locator("[data-role=send]")).to_be_disabled()
    await chat.draft.press("Enter")
    await asyncio.sleep(0.5)
    await expect(chat.questions).to_have_count(0)
    assert len(await chat.draft.input_value()) == len(huge)
    await expect(chat.state).to_have_text("live")
    assert fake_openai.requests == []


async def test_enter_that_commits_an_input_method_composition_does_not_send(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """Typing Korean: the Enter that ends the composition (isComposing, keyCode 229) is the input
    method's, not a send; the next Enter sends."""
    site = await demo()
    chat = await ChatPage.open(context, site.url)
    await chat.draft.fill("안녕하세요")
    for flags in ({"isComposing": True}, {"keyCode": 229}):
        options = {"key": "Enter", "bubbles": True, "cancelable": True, **flags}
        await chat.draft.evaluate("(el, options) => el.dispatchEvent(new KeyboardEvent('keydown', options))", options)
    await asyncio.sleep(0.3)
    await expect(chat.questions).to_have_count(0)
    assert await chat.draft.input_value() == "안녕하세요"
    await chat.draft.press("Enter")
    await expect(chat.questions).to_have_text(["안녕하세요"])
    await chat.answer(0)


async def test_a_message_sent_after_a_network_blip_is_delivered(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """The browser goes offline for 1.5 s and back while the socket lives through it: the badge
    says offline, then live again, and a message sent then is answered."""
    site = await demo()
    fake_openai.push(Reply(chunks=["still", " here"]))
    chat = await ChatPage.open(context, site.url)
    await context.set_offline(True)
    await expect(chat.state).to_have_text("offline")
    await asyncio.sleep(1.5)
    await context.set_offline(False)
    await expect(chat.state).to_have_text("live")
    await chat.ask("hello after a blip")
    assert await chat.answer(0) == "still here"


async def test_a_message_not_yet_acknowledged_survives_a_reload(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """Sent into a dead socket, then the page is reloaded before anything noticed: the message is
    still there after the reload, sent on the new connection, and answered once."""
    fake_openai.push(Reply(chunks=["kept", " it"]))
    async with asked_into_a_dead_network(await demo(), context, "my important question") as chat:
        await chat.page.reload()
        await expect(chat.questions).to_have_text(["my important question"], timeout=10_000)
        assert await chat.answer(0) == "kept it"
    assert len(fake_openai.requests) == 1
