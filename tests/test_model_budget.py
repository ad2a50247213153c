"""The model budget over time: requests and estimated tokens a minute, per requester, per address
and in all. A client over its share gets ``rate_limited`` with ``retry_after``, to itself alone,
logged once a minute and counted, and nothing goes upstream."""

from __future__ import annotations

import logging

import pytest

from cable_server.llm.budget import Allowance, Budget, estimate_tokens
from cable_server.testing import FakeOpenAI

from .chat_helpers import read_answer, room, start_chat
from .conftest import ServerFactory
from .test_observability import scrape

UNBOUNDED = Allowance(0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_requester_gets_its_minute_at_once_then_its_rate() -> None:
    clock = Clock()
    budget = Budget(per_requester=Allowance(3, 0), per_address=UNBOUNDED, total=UNBOUNDED, clock=clock)
    assert [budget.charge(1, requester="alice", address=None) for _ in range(3)] == [None] * 3
    refusal = budget.charge(1, requester="alice", address=None)
    assert refusal is not None and (refusal.bound, refusal.measure, refusal.retry_after) == ("requester", "requests", 20)
    assert budget.charge(1, requester="bob", address=None) is None  # another requester's share is its own
    clock.now += 20  # a third of the minute: one request back
    assert budget.charge(1, requester="alice", address=None) is None
    assert budget.charge(1, requester="alice", address=None) is not None


def test_a_refused_request_is_charged_nowhere() -> None:
    """All or nothing: the address refuses, so the requester's and the process's buckets keep their tokens."""
    budget = Budget(per_requester=Allowance(2, 0), per_address=Allowance(1, 0), total=Allowance(2, 0), clock=Clock())
    assert budget.charge(1, requester="a", address="10.0.0.1") is None
    refusal = budget.charge(1, requester="a", address="10.0.0.1")
    assert refusal is not None and refusal.bound == "address"
    assert budget.charge(1, requester="a", address="10.0.0.2") is None  # a and the total still had one each
    refusal = budget.charge(1, requester="b", address="10.0.0.3")
    assert refusal is not None and refusal.bound == "total"


def test_tokens_are_a_measure_of_their_own_and_a_huge_request_passes_only_when_the_bucket_is_full() -> None:
    clock = Clock()
    budget = Budget(per_requester=Allowance(0, 1_000), per_address=UNBOUNDED, total=UNBOUNDED, clock=clock)
    assert budget.charge(600, requester="a", address=None) is None
    refusal = budget.charge(600, requester="a", address=None)
    assert refusal is not None and (refusal.measure, refusal.retry_after) == ("tokens", 12)  # 200 missing at 1000/60 a second
    clock.now += 60
    assert budget.charge(50_000, requester="a", address=None) is None  # more than a minute's worth: all of it
    assert budget.charge(1, requester="a", address=None) is not None


def test_a_refusal_is_first_once_a_minute_per_bound_and_key() -> None:
    clock = Clock()
    budget = Budget(per_requester=Allowance(1, 0), per_address=UNBOUNDED, total=UNBOUNDED, clock=clock)
    budget.charge(1, requester="a", address=None)
    firsts = [budget.charge(1, requester="a", address=None).first for _ in range(3)]  # type: ignore[union-attr]
    assert firsts == [True, False, False]
    clock.now += 30
    assert budget.charge(1, requester="a", address=None).first is False  # type: ignore[union-attr]
    clock.now += 31  # refilled meanwhile: take it, then be refused anew
    assert budget.charge(1, requester="a", address=None) is None
    assert budget.charge(1, requester="a", address=None).first is True  # type: ignore[union-attr]


def test_memory_is_bounded_by_forgetting_requesters_whose_share_is_whole_again() -> None:
    clock = Clock()
    budget = Budget(per_requester=Allowance(5, 0), per_address=UNBOUNDED, total=UNBOUNDED, clock=clock, max_keys=100)
    for n in range(1_000):
        budget.charge(1, requester=f"r{n}", address=None)
        clock.now += 1
    assert len(budget) <= 100


def test_tokens_are_estimated_at_four_characters() -> None:
    assert estimate_tokens("x" * 32_000, None, "y" * 3) == 8_001


async def test_a_client_over_its_share_is_refused_alone_and_nothing_goes_upstream(
    serve: ServerFactory, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """Two tabs of alice in her room: the tab over the budget alone gets ``rate_limited`` with
    ``retry_after``; no request reaches the provider; one warning, every refusal counted."""
    chat = await start_chat(serve, fake_openai, requests_per_minute_per_user=2)
    tab, other_tab = await chat.user("alice"), await chat.user("alice")
    for n in range(2):
        await tab.perform(room("alice"), "send_message", user_content=f"question {n}")
        assert (await read_answer(tab, room("alice"))).last["event"] == "done"
        await read_answer(other_tab, room("alice"))
    for _ in range(3):
        await tab.perform(room("alice"), "send_message", user_content="one more")
        refused = (await tab.recv())["message"]
        assert refused["event"] == "error" and refused["error"]["category"] == "rate_limited"
        assert 1 <= refused["error"]["retry_after"] <= 30
    await other_tab.expect_silence(0.3)
    assert len(fake_openai.requests) == 2
    budget_warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "model_budget" in r.getMessage()]
    assert len(budget_warnings) == 1 and "per requester alice" in budget_warnings[0].getMessage()
    assert (await scrape(chat.server))['cable_limit_hits_total{kind="model_budget"}'] == 3


async def test_anonymous_connections_of_one_address_share_its_budget(serve: ServerFactory, fake_openai: FakeOpenAI) -> None:
    """Ten anonymous sockets each have a share of their own, and all of them one of their address."""
    chat = await start_chat(serve, fake_openai, requests_per_minute_per_user=100, requests_per_minute_per_address=3)
    clients = [await chat.user(None, subscribe=n) for n in range(4)]
    categories = []
    for n, client in enumerate(clients):
        await client.perform(room(n), "send_message", user_content="hi", user_id=n)
        categories.append((await read_answer(client, room(n))).last.get("error", {}).get("category"))
    assert categories == [None, None, None, "rate_limited"]
    assert len(fake_openai.requests) == 3


async def test_the_blogs_page_asking_one_question_at_a_time_never_meets_the_defaults(
    serve: ServerFactory, fake_openai: FakeOpenAI
) -> None:
    """Defaults: a user who waits for each answer (the blog's page) is never refused; the request
    asks for at most max_tokens (2048 by default)."""
    chat = await start_chat(serve, fake_openai)
    client = await chat.user(None, subscribe=42)
    for n in range(12):
        await client.perform(room(42), "send_message", user_content=f"question {n}", system_content="Be brief.", user_id=42)
        assert (await read_answer(client, room(42))).last["event"] == "done"
    assert len(fake_openai.requests) == 12
    assert {request.body["max_tokens"] for request in fake_openai.requests} == {2048}
