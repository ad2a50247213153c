"""The demo chat behaves like the chat UIs people use (headless Chromium, the built Vue app).

Following the stream and jumping back to it, code blocks, what Markdown may load, text that stays
selectable while it streams, the transcript after a reload, the empty state, clearing with a
confirmation, accessibility (labels, live region, focus, contrast) and a phone-sized screen;
screenshots of desktop and mobile land in test-artifacts/.
"""

from __future__ import annotations

from playwright.async_api import Browser, BrowserContext, expect

from cable_server.testing import FakeOpenAI, Reply

from .chat_page import SNAPSHOTS, ChatPage, DemoFactory
from .frontend import screenshot

PARAGRAPHS = Reply(chunks=[f"Paragraph {k} says something about streaming.\n\n" for k in range(80)], delay=0.03)
CODE = (
    "Here is a function:\n\n```python\ndef answer():\n    return 42\n```\n\n"
    "See [the docs](https://example.com/docs) and ![a pixel](https://tracker.example/pixel.png).\n"
)

# The contrast ratio (WCAG 2) of each visible text element against the background behind it.
CONTRASTS = """
() => {
  const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
  const lum = ([r, g, b]) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgb(getComputedStyle(el).backgroundColor);
      if (c.length < 4 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  const out = [];
  for (const el of document.querySelectorAll('main *')) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.checkVisibility() || el.closest('.visually-hidden, .hljs')) continue;
    const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
    out.push([el.tagName + '.' + el.className, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)]);
  }
  return out;
}
"""


async def test_the_view_follows_the_answer_unless_the_reader_scrolls_up(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """At the bottom, the stream keeps the view there; scrolled up, the view stays put and "Jump to
    latest" appears; clicking it goes back to the bottom and follows again."""
    site = await demo()
    fake_openai.push(PARAGRAPHS)
    chat = await ChatPage.open(context, site.url)
    await chat.page.set_viewport_size({"width": 900, "height": 600})
    await chat.ask("Write a lot")
    await expect(chat.answers.nth(0)).to_contain_text("Paragraph 15", timeout=10_000)
    scroller = chat.page.locator("[data-role=turns]")
    gap = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight"
    assert await scroller.evaluate(gap) < 48
    await scroller.evaluate("(el) => el.scrollTo(0, 0)")
    await expect(chat.page.locator("[data-role=jump]")).to_be_visible()
    await expect(chat.answers.nth(0)).to_contain_text("Paragraph 30", timeout=10_000)
    assert await scroller.evaluate("(el) => el.scrollTop") == 0
    await chat.page.locator("[data-role=jump]").click()
    await expect(chat.page.locator("[data-role=jump]")).to_have_count(0)
    await chat.answer(0)
    assert await scroller.evaluate(gap) < 48


async def test_code_is_labelled_highlighted_and_copied_and_markdown_loads_nothing(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """A fenced block gets its language, highlighting and a Copy button that copies the code; the
    answer's own Copy copies its Markdown; links open in a new tab without a referrer; the image
    is a link, never fetched."""
    site = await demo()
    fake_openai.push(Reply(chunks=[CODE[i : i + 7] for i in range(0, len(CODE), 7)], delay=0.005))
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    fetched: list[str] = []
    await context.route("https://tracker.example/**", lambda route: (fetched.append(route.request.url), route.abort()))
    chat = await ChatPage.open(context, site.url)
    await chat.ask("Show me code")
    await chat.answer(0)
    code = chat.answers.nth(0).locator(".code")
    await expect(code.locator(".code-head span")).to_have_text("python")
    await expect(code.locator(".hljs-keyword").first).to_have_text("def")
    await code.locator("[data-copy-code]").click()
    assert await chat.page.evaluate("navigator.clipboard.readText()") == "def answer():\n    return 42"
    await chat.answers.nth(0).locator("[data-role=copy]").click()
    assert await chat.page.evaluate("navigator.clipboard.readText()") == CODE
    link = chat.answers.nth(0).get_by_role("link", name="the docs")
    assert (await link.get_attribute("target"), await link.get_attribute("rel")) == ("_blank", "noopener noreferrer nofollow")
    await expect(chat.answers.nth(0).locator("img")).to_have_count(0)
    await expect(chat.answers.nth(0).get_by_role("link", name="image: a pixel")).to_be_visible()
    assert fetched == []


async def test_text_stays_selected_while_the_answer_streams(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """A paragraph selected mid-answer is still selected after many more tokens (the blocks above
    the one being written are not rendered again)."""
    site = await demo()
    fake_openai.push(PARAGRAPHS)
    chat = await ChatPage.open(context, site.url)
    await chat.ask("Write a lot")
    await expect(chat.answers.nth(0)).to_contain_text("Paragraph 3 ", timeout=10_000)
    selected = await chat.page.evaluate(
        """() => {
          const p = document.querySelector('[data-role=assistant] .block p');
          const range = document.createRange();
          range.selectNodeContents(p);
          getSelection().removeAllRanges();
          getSelection().addRange(range);
          return getSelection().toString();
        }"""
    )
    assert selected == "Paragraph 0 says something about streaming."
    await expect(chat.answers.nth(0)).to_contain_text("Paragraph 20", timeout=10_000)
    assert await chat.page.evaluate("getSelection().toString()") == selected


async def test_after_a_reload_the_transcript_shows_every_turn_as_it_ended(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """A stopped answer and a failed one come back after a reload as they were: marked, with the
    questions, and the view at the latest message."""
    site = await demo()
    fake_openai.push(PARAGRAPHS, Reply.error(500, "upstream exploded"))
    chat = await ChatPage.open(context, site.url)
    await chat.ask("First")
    await expect(chat.answers.nth(0)).to_contain_text("Paragraph 2", timeout=10_000)
    await chat.page.locator("[data-role=stop]").click()
    await chat.answer(0, "stopped")
    await expect(chat.draft).to_be_focused()  # focus goes back to the input after Stop
    await chat.ask("Second")
    await chat.answer(1, "error")
    await chat.page.reload()
    await expect(chat.state).to_have_text("live", timeout=10_000)
    await expect(chat.questions).to_have_text(["First", "Second"])
    await expect(chat.answers.nth(0).locator("[data-role=ending]")).to_have_text("Stopped.")
    await expect(chat.answers.nth(1).locator("[data-role=error]")).to_have_text("Something went wrong on the server.")
    await expect(chat.answers.nth(1).locator("[data-role=retry]")).to_have_text("Retry")


async def test_the_empty_state_clearing_and_accessibility(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """A first visit says what this is and which model answers, with example prompts that send;
    the input is labelled, speakers are named, the live region announces the answer, every text
    has a contrast of at least 4.5:1; New conversation asks first, and Keep keeps."""
    site = await demo()
    fake_openai.push(Reply(chunks=["Streams", " are", " nice."]))
    chat = await ChatPage.open(context, site.url)
    empty = chat.page.locator("[data-role=empty]")
    await expect(empty).to_contain_text("gpt-4o-mini")
    await screenshot(chat.page, "vue-chat-empty")
    await expect(chat.page.get_by_label("Message")).to_be_visible()
    await chat.page.locator("[data-role=example]").first.click()
    assert await chat.answer(0) == "Streams are nice."
    await expect(chat.page.locator("[data-role=user] .speaker")).to_have_text("You")
    await expect(chat.page.locator("[data-role=assistant] .speaker")).to_have_text("Assistant")
    await expect(chat.page.locator("[data-role=announcer]")).to_have_text("Answer: Streams are nice.")
    low = [(name, ratio) for name, ratio in await chat.page.evaluate(CONTRASTS) if ratio < 4.5]
    assert low == []
    await chat.page.locator("[data-role=reset]").click()
    await chat.page.get_by_role("button", name="Keep").click()
    await expect(chat.answers).to_have_count(1)
    await chat.page.locator("[data-role=reset]").click()
    await chat.page.locator("[data-role=confirm-reset]").click()
    await expect(empty).to_be_visible()
    await chat.page.reload()
    await expect(chat.state).to_have_text("live", timeout=10_000)
    await expect(empty).to_be_visible()


async def test_desktop_and_phone_screens(demo: DemoFactory, fake_openai: FakeOpenAI, browser: Browser) -> None:
    """On a 390x844 phone the input has most of the width and a 16 px font (no zoom on focus), a
    long word wraps instead of widening the page; screenshots of both sizes in test-artifacts/."""
    site = await demo()
    answer = CODE + "\n" + "unbreakable" * 20 + "\n\n- a list\n- of things\n"
    sizes = {"desktop": {"width": 1280, "height": 800}, "mobile": {"width": 390, "height": 844}}
    for name, viewport in sizes.items():
        fake_openai.push(Reply(chunks=[answer[i : i + 9] for i in range(0, len(answer), 9)], delay=0.002))
        context = await browser.new_context(viewport=viewport, is_mobile=name == "mobile", has_touch=name == "mobile")
        await context.add_init_script(SNAPSHOTS)
        chat = await ChatPage.open(context, site.url)
        await chat.ask("Show me what you can do, with a very long word in it")
        await chat.answer(0)
        assert await chat.page.evaluate("document.scrollingElement.scrollWidth") <= viewport["width"]
        if name == "mobile":
            box = await chat.draft.bounding_box()
            assert box is not None and box["width"] > 0.6 * viewport["width"]
            assert await chat.draft.evaluate("(el) => getComputedStyle(el).fontSize") == "16px"
        await screenshot(chat.page, f"vue-chat-{name}")
        await context.close()


async def test_a_reference_link_points_where_its_own_answer_defines_it(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """Two answers with the same sentence "[the page][d]" and different definitions of [d]: each
    link goes to its own answer's (a rendered block is reused only with the same definitions)."""
    site = await demo()
    for target in ("https://first.example/", "https://second.example/"):
        fake_openai.push(Reply(chunks=["Read [the page][d].\n\n", f"[d]: {target}\n"]))
    chat = await ChatPage.open(context, site.url)
    for n, question in enumerate(("one", "two")):
        await chat.ask(question)
        await chat.answer(n)
    links = chat.page.locator("[data-role=assistant] a")
    assert [await link.get_attribute("href") for link in await links.all()] == [
        "https://first.example/",
        "https://second.example/",
    ]


async def test_each_new_question_and_its_answer_come_into_view(
    demo: DemoFactory, fake_openai: FakeOpenAI, context: BrowserContext
) -> None:
    """On a phone, eight questions in a row: after each, the view is at the end without the reader
    doing anything (the input shrinking on send does not stop the following)."""
    site = await demo()
    for n in range(8):
        fake_openai.push(Reply(chunks=[f"Answer {n}, line {k}.\n\n" for k in range(6)], delay=0.01))
    chat = await ChatPage.open(context, site.url)
    await chat.page.set_viewport_size({"width": 390, "height": 844})
    scroller = chat.page.locator("[data-role=turns]")
    for n in range(8):
        await chat.draft.fill(f"Question number {n}: why is the sky blue?\nSecond line.")
        await chat.draft.press("Enter")
        await chat.answer(n)
        await expect(chat.page.locator("[data-role=jump]")).to_have_count(0)
        assert await scroller.evaluate("(el) => el.scrollHeight - el.scrollTop - el.clientHeight") < 48
