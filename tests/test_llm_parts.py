"""The chat service's parts without sockets: settings, the pool, history bounds, error mapping, models."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import openai
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from cable_server.errors import PubSubError
from cable_server.llm import ChatSettings, ErrorCategory, GenerationError, MemoryHistory, OfflineModel
from cable_server.llm.deadline import deadline
from cable_server.llm.errors import classify
from cable_server.llm.history import trim
from cable_server.llm.models import Delta, OpenAIModel, _delta, model_for
from cable_server.llm.pool import GenerationPool
from cable_server.llm.settings import SettingsError
from cable_server.llm.sse import SSEDecoder

# --- settings -------------------------------------------------------------------------------


def test_settings_read_the_sdk_variables_and_cable_llm_ones() -> None:
    env = {
        "OPENAI_API_KEY": "sk-env",
        "OPENAI_BASE_URL": "http://localhost:11434/v1",
        "CABLE_LLM_MODEL": "llama3.2",
        "CABLE_LLM_TEMPERATURE": "0.2",
        "CABLE_LLM_MAX_TOKENS": "256",
        "CABLE_LLM_ALLOW_CLIENT_SYSTEM_PROMPT": "false",
        "CABLE_LLM_SYSTEM_PROMPT": "Be kind.",
    }
    settings = ChatSettings.from_env(env)
    assert (settings.api_key, settings.base_url, settings.model) == ("sk-env", "http://localhost:11434/v1", "llama3.2")
    assert (settings.temperature, settings.max_tokens) == (0.2, 256)
    assert settings.allow_client_system_prompt is False and settings.system_prompt == "Be kind."
    assert not settings.offline


def test_no_key_and_no_endpoint_means_the_offline_model() -> None:
    settings = ChatSettings.from_env({})
    assert settings.offline and isinstance(model_for(settings), OfflineModel)


def test_an_endpoint_without_a_key_is_a_local_server() -> None:
    """Ollama, vLLM and llama.cpp need no key: a base URL alone selects the SDK."""
    assert isinstance(model_for(ChatSettings.from_env({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})), OpenAIModel)


def test_the_http_transport_is_the_sdks_aiohttp_client_unless_told_otherwise() -> None:
    aiohttp_model = OpenAIModel(ChatSettings(api_key="sk", max_concurrent=300))
    assert type(aiohttp_model.client._client).__name__ == type(openai.DefaultAioHttpClient()).__name__
    httpx_model = OpenAIModel(ChatSettings.from_env({"OPENAI_API_KEY": "sk", "CABLE_LLM_HTTP_CLIENT": "httpx"}))
    assert isinstance(httpx_model.client._client, openai.DefaultAsyncHttpxClient)
    with pytest.raises(SettingsError, match="CABLE_LLM_HTTP_CLIENT must be one of aiohttp, httpx, got 'requests'"):
        ChatSettings.from_env({"CABLE_LLM_HTTP_CLIENT": "requests"})


def test_a_malformed_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="CABLE_LLM_MAX_CONCURRENT"):
        ChatSettings.from_env({"CABLE_LLM_MAX_CONCURRENT": "many"})


@pytest.mark.parametrize(
    ("raw", "value"), [("1", True), ("Yes", True), (" ON ", True), ("0", False), ("False", False), ("off", False)]
)
def test_a_boolean_takes_the_usual_words_in_either_case(raw: str, value: bool) -> None:
    assert ChatSettings.from_env({"CABLE_LLM_ALLOW_CLIENT_SYSTEM_PROMPT": raw}).allow_client_system_prompt is value


@pytest.mark.parametrize("raw", ["flase", "", "2", "disabled"])
def test_a_boolean_that_is_no_word_of_them_refuses_with_the_variable_and_the_words(raw: str) -> None:
    """A typo of an operator's pin (``flase``) was read as true: client system prompts stayed allowed."""
    with pytest.raises(SettingsError, match=r"CABLE_LLM_ALLOW_CLIENT_SYSTEM_PROMPT must be one of 1, true, yes, on, 0, false"):
        ChatSettings.from_env({"CABLE_LLM_ALLOW_CLIENT_SYSTEM_PROMPT": raw})


# --- pool -----------------------------------------------------------------------------------


async def test_the_pool_serves_waiters_first_come_first_served() -> None:
    pool = GenerationPool(limit=2, max_waiting=10)
    order: list[str] = []
    positions: dict[str, list[int]] = {}
    finish = {f"g{i}": asyncio.Event() for i in range(5)}

    async def generation(name: str) -> None:
        async def told(position: int) -> None:
            positions.setdefault(name, []).append(position)

        async with pool.slot(told):
            order.append(name)
            await finish[name].wait()

    tasks = [asyncio.ensure_future(generation(f"g{i}")) for i in range(5)]
    await asyncio.sleep(0.01)
    assert order == ["g0", "g1"] and pool.active == 2 and pool.waiting == 3
    for name in finish:  # one slot frees at a time: everyone in line moves up by one
        finish[name].set()
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert order == ["g0", "g1", "g2", "g3", "g4"]
    assert positions == {"g2": [1], "g3": [2, 1], "g4": [3, 2, 1]}
    assert pool.active == 0


async def test_a_waiter_that_gives_up_leaves_the_line_and_the_others_move_up() -> None:
    pool = GenerationPool(limit=1, max_waiting=10)
    hold = asyncio.Event()
    positions: list[int] = []

    async def occupy() -> None:
        async with pool.slot(_ignore):
            await hold.wait()

    async def wait(record: bool) -> None:
        async def told(position: int) -> None:
            if record:
                positions.append(position)

        async with pool.slot(told):
            pass

    holder = asyncio.ensure_future(occupy())
    await asyncio.sleep(0)
    quitter = asyncio.ensure_future(wait(False))
    stayer = asyncio.ensure_future(wait(True))
    await asyncio.sleep(0.01)
    quitter.cancel()
    await asyncio.sleep(0.01)
    assert positions == [2, 1]
    hold.set()
    await asyncio.gather(holder, stayer)
    assert pool.active == 0 and pool.waiting == 0


async def test_a_full_line_refuses_at_once() -> None:
    pool = GenerationPool(limit=1, max_waiting=0)
    async with pool.slot(_ignore):
        with pytest.raises(GenerationError) as refused:
            async with pool.slot(_ignore):
                pass
    assert refused.value.category is ErrorCategory.OVERLOADED


async def _ignore(position: int) -> None:
    pass


# --- history --------------------------------------------------------------------------------


def test_trim_keeps_the_latest_turns_within_both_bounds() -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i}" * 10} for i in range(10)]
    assert trim(turns, max_messages=4, max_tokens=10_000) == turns[-4:]
    kept = trim(turns, max_messages=100, max_tokens=30)  # each message costs 5 + 4 = 9 tokens
    assert kept == turns[-2:]


def test_trim_never_starts_with_an_assistant_turn() -> None:
    turns = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]
    assert trim(turns, max_messages=2, max_tokens=1_000) == turns[-1:]


async def test_memory_history_is_per_room_and_clears() -> None:
    history = MemoryHistory(max_messages=3, max_tokens=1_000)
    await history.append("a", {"role": "user", "content": "1"}, {"role": "assistant", "content": "2"})
    await history.append("a", {"role": "user", "content": "3"}, {"role": "assistant", "content": "4"})
    assert [m["content"] for m in await history.load("a")] == ["3", "4"]
    assert await history.load("b") == []
    await history.clear("a")
    assert await history.load("a") == []


# --- the moving deadline ----------------------------------------------------------------------


async def test_a_deadline_moved_on_in_time_never_fires() -> None:
    async with deadline(0.05) as timer:
        for _ in range(6):
            await asyncio.sleep(0.02)
            timer.in_(0.05)  # 0.12 s in all: past the first deadline, never past a moved one


async def test_a_deadline_not_moved_fires_once_reached() -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        async with deadline(0.2) as timer:
            timer.in_(0.05)  # earlier than the timer armed: it must wake sooner
            await asyncio.sleep(5)
    assert 0.04 <= loop.time() - started < 0.15


async def test_a_deadline_that_ended_leaves_no_timer_behind() -> None:
    async with deadline(0.01):
        pass
    await asyncio.sleep(0.03)  # its timer would cancel this task now; it was dropped with the block


# --- errors and models ----------------------------------------------------------------------


def _status_error(status: int, body: object) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://x/v1/chat/completions")
    response = httpx.Response(status, request=request, json=body)
    cls = {401: openai.AuthenticationError, 429: openai.RateLimitError, 500: openai.InternalServerError}.get(
        status, openai.APIStatusError
    )
    return cls("error", response=response, body=body)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "started", "category"),
    [
        (TimeoutError(), False, ErrorCategory.TIMEOUT),
        (TimeoutError(), True, ErrorCategory.STALLED),
        (json.JSONDecodeError("x", "{", 1), True, ErrorCategory.PROTOCOL),
        (RuntimeError("bug"), True, ErrorCategory.INTERNAL),
        (RedisConnectionError("Connection closed by server."), True, ErrorCategory.UNAVAILABLE),
        (PubSubError("cannot publish"), False, ErrorCategory.UNAVAILABLE),
    ],
)
def test_classify_maps_failures_to_categories(error: BaseException, started: bool, category: ErrorCategory) -> None:
    assert classify(error, started=started).category is category


def test_classify_keeps_the_providers_message_as_detail() -> None:
    error = classify(_status_error(429, {"message": "Slow down", "type": "rate_limit"}), started=False)
    assert error.category is ErrorCategory.RATE_LIMIT and error.detail == "Slow down"
    assert "Slow down" not in error.as_dict()["message"] and "Slow down" in error.as_dict(detail=True)["message"]


async def test_the_offline_model_streams_a_labelled_answer_word_by_word() -> None:
    model = OfflineModel(tokens_per_second=0)
    messages = [{"role": "user", "content": "What is ActionCable?"}]
    async with contextlib.aclosing(model.stream(messages)) as deltas:
        pieces = [delta async for delta in deltas]
    text = "".join(piece.content for piece in pieces)
    assert text == OfflineModel.answer(messages)
    assert text.startswith("**Offline demo model.**") and "What is ActionCable?" in text
    assert len(pieces) > 20 and pieces[-1].finish_reason == "stop" and pieces[-1].usage


# --- the stream's wire format ---------------------------------------------------------------


def test_sse_events_are_cut_wherever_the_bytes_split() -> None:
    """However the network splits the bytes, the same events come out."""
    stream = b'data: {"a":1}\n\n: keep-alive\n\ndata: {"b":\ndata:2}\r\n\r\nevent: x\nid: 7\ndata: [DONE]\n\n'
    expected = [b'{"a":1}', b'{"b":\n2}', b"[DONE]"]
    for size in (1, 2, 3, 7, len(stream)):
        decoder = SSEDecoder()
        events = [e for i in range(0, len(stream), size) for e in decoder.feed(stream[i : i + size])]
        assert events + decoder.close() == expected


def test_sse_last_event_counts_without_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: tail") == []
    assert decoder.close() == [b"tail"]


@pytest.mark.parametrize(
    ("chunk", "delta"),
    [
        ({"choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}, Delta("Hi")),
        ({"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}, Delta("")),
        ({"choices": [{"index": 0, "delta": {}, "finish_reason": "length"}]}, Delta("", "length")),
        ({"choices": [], "usage": {"total_tokens": 3}}, Delta(usage={"total_tokens": 3})),
    ],
)
def test_chunks_reduce_to_content_finish_reason_and_usage(chunk: object, delta: Delta) -> None:
    assert _delta(chunk) == delta


@pytest.mark.parametrize(
    ("chunk", "category"),
    [
        ([1, 2], ErrorCategory.PROTOCOL),
        ({"choices": "nope"}, ErrorCategory.PROTOCOL),
        ({"choices": [{"delta": {"content": 5}}]}, ErrorCategory.PROTOCOL),
        ({"error": {"message": "overloaded_error"}}, ErrorCategory.UPSTREAM),
    ],
)
def test_malformed_chunks_and_error_events_fail_with_a_category(chunk: object, category: ErrorCategory) -> None:
    with pytest.raises(GenerationError) as failed:
        _delta(chunk)
    assert failed.value.category is category
