"""Where tokens come from: any OpenAI-compatible endpoint through the SDK, or the offline demo model.

A model turns a list of chat messages into an async iterator of :class:`Delta`. Closing the
iterator (the generation was stopped or cancelled) closes the upstream HTTP response, so the
provider stops producing tokens.
"""

from __future__ import annotations

import abc
import asyncio
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx2
import openai
import orjson

from .errors import ErrorCategory, GenerationError
from .settings import ChatSettings
from .sse import SSEDecoder

if TYPE_CHECKING:
    pass

__all__ = ["ChatModel", "Delta", "Message", "OfflineModel", "OpenAIModel", "model_for"]

#: ``{"role": "user" | "assistant" | "system", "content": "..."}``
Message = dict[str, str]


@dataclass(slots=True)
class Delta:
    """One upstream chunk, reduced to what the channel uses."""

    content: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


class ChatModel(abc.ABC):
    """A source of streamed answers: the SDK, the offline model, or your own."""

    #: Logged with every generation.
    name: str

    @abc.abstractmethod
    def stream(self, messages: Sequence[Message]) -> AsyncGenerator[Delta]:
        """Stream the answer to ``messages``; use with ``contextlib.aclosing``."""

    async def close(self) -> None:  # noqa: B027 (most models hold nothing to release)
        """Release connections; called when the server stops."""


class OpenAIModel(ChatModel):
    """A streamed chat completion through the official SDK's ``AsyncOpenAI`` (its public ``post``
    to ``/chat/completions``, the request ``chat.completions.create(stream=True)`` sends), on
    its aiohttp transport unless ``http_client`` says ``httpx``."""

    def __init__(self, settings: ChatSettings) -> None:
        self.name = settings.model
        self._settings = settings
        self.client = openai.AsyncOpenAI(
            # Local servers (Ollama, vLLM, llama.cpp) take any key, but the SDK insists on one.
            api_key=settings.api_key or "unused",
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            # No read timeout: the service's deadline (first token, then stall) covers the whole
            # request, and aiohttp would otherwise re-arm a timer on every chunk it reads.
            timeout=openai.Timeout(None, connect=10.0),
            http_client=_http_client(settings),
        )

    def _body(self, messages: Sequence[Message]) -> dict[str, Any]:
        """The chat completion request: what ``create(stream=True, ...)`` would send."""
        settings = self._settings
        body: dict[str, Any] = {"model": settings.model, "messages": list(messages), "stream": True}
        if settings.temperature is not None:
            body["temperature"] = settings.temperature
        if settings.max_tokens:
            body["max_tokens"] = settings.max_tokens
        if settings.include_usage:
            body["stream_options"] = {"include_usage": True}
        return body

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[Delta]:
        # The SDK makes the request (auth, base URL, retries before the first byte, status
        # errors as typed exceptions) through its public ``post``, the documented way to call
        # an endpoint with the client's options: ``chat.completions.create`` would first walk
        # the messages through its typed-params transform, ~1 ms of CPU per request, which is
        # what 300 answers asked at once wait behind. The body is decoded here, see ``sse``.
        answer = await self.client.post(
            "/chat/completions", cast_to=object, body=self._body(messages), stream=True, stream_cls=openai.AsyncStream[object]
        )
        response = answer.response
        try:
            decoder = SSEDecoder()
            body = response.aiter_bytes()
            finished = False
            while True:
                try:
                    data = await anext(body, None)
                except Exception as exc:  # the transport failed mid-body: httpx's errors, unwrapped
                    request = response.request
                    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
                        raise openai.APITimeoutError(request=request) from exc
                    raise openai.APIConnectionError(message=str(exc) or type(exc).__name__, request=request) from exc
                if data is None:
                    events = decoder.close()
                elif finished:  # read the body to its end, so the connection goes back to the pool
                    continue
                else:
                    events = decoder.feed(data)
                for event in events:
                    if event.startswith(b"[DONE]"):
                        finished = True
                        break
                    yield _delta(orjson.loads(event))
                if data is None:
                    return
        finally:
            await answer.close()

    async def close(self) -> None:
        await self.client.close()


def _http_client(settings: ChatSettings) -> httpx2.AsyncClient:
    """The SDK's own client on the transport chosen, with a pool as large as the concurrency:
    the SDK's default keeps only 100 idle connections, so after a burst of answers most of the
    next ones would pay a new TCP (and TLS) handshake."""
    size = settings.http_max_connections or settings.max_concurrent
    limits = httpx2.Limits(max_connections=size, max_keepalive_connections=size, keepalive_expiry=60.0)
    if settings.http_client == "httpx":
        return openai.DefaultAsyncHttpxClient(limits=limits)
    return openai.DefaultAioHttpClient(limits=limits)


def _delta(chunk: Any) -> Delta:
    """``choices[0].delta.content`` (``""`` when absent), the finish reason and the usage."""
    if not isinstance(chunk, dict):
        raise GenerationError(ErrorCategory.PROTOCOL, "The model provider sent a chunk that is not a JSON object.")
    error = chunk.get("error")
    if error:
        message = error.get("message") if isinstance(error, dict) else None
        raise GenerationError(ErrorCategory.UPSTREAM, "The model provider reported an error.", detail=str(message or error))
    usage = chunk.get("usage")
    choices = chunk.get("choices") or []
    if not isinstance(choices, list) or (choices and not isinstance(choices[0], dict)):
        raise GenerationError(ErrorCategory.PROTOCOL, "The model provider sent a chunk without valid choices.")
    if not choices:
        return Delta(usage=usage if isinstance(usage, dict) else None)
    delta = choices[0].get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    if content is not None and not isinstance(content, str):
        raise GenerationError(ErrorCategory.PROTOCOL, "The model provider sent a chunk whose content is not text.")
    finish_reason = choices[0].get("finish_reason")
    return Delta(
        content or "", finish_reason if isinstance(finish_reason, str) else None, usage if isinstance(usage, dict) else None
    )


class OfflineModel(ChatModel):
    """A canned, clearly labelled answer streamed word by word, for machines with no key or network."""

    name = "offline-demo"

    def __init__(self, tokens_per_second: float = 40.0) -> None:
        self._pause = 1 / tokens_per_second if tokens_per_second > 0 else 0.0

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[Delta]:
        tokens = re.findall(r"\s*\S+", self.answer(messages))
        for token in tokens:
            await asyncio.sleep(self._pause)
            yield Delta(token)
        prompt = sum(len(m["content"]) for m in messages) // 4
        yield Delta(
            finish_reason="stop",
            usage={"prompt_tokens": prompt, "completion_tokens": len(tokens), "total_tokens": prompt + len(tokens)},
        )

    @staticmethod
    def answer(messages: Sequence[Message]) -> str:
        """The demo answer: it says what it is, and echoes the question so streaming is visible."""
        questions = [m["content"] for m in messages if m["role"] == "user"]
        question = " ".join(questions[-1].split()) if questions else ""
        if len(question) > 200:
            question = question[:200] + "..."
        return (
            "**Offline demo model.** No API key is configured, so this answer is generated locally, "
            f"word by word, to show the streaming. You asked: “{question}” "
            f"(message {len(questions)} of this conversation). "
            "Set `OPENAI_API_KEY` (and `OPENAI_BASE_URL` for Ollama, vLLM or llama.cpp) "
            "and restart to talk to a real model."
        )


def model_for(settings: ChatSettings) -> ChatModel:
    """The offline model when no key nor endpoint is configured, else the SDK."""
    if settings.offline:
        return OfflineModel(settings.offline_tokens_per_second)
    return OpenAIModel(settings)
