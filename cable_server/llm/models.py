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
from typing import TYPE_CHECKING, Any, cast

import openai

from .errors import ErrorCategory, GenerationError
from .settings import ChatSettings

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionMessageParam

__all__ = ["ChatModel", "Delta", "Message", "OfflineModel", "OpenAIModel", "model_for"]

#: ``{"role": "user" | "assistant" | "system", "content": "..."}``
Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class Delta:
    """One upstream chunk, reduced to what the channel uses."""

    content: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


class ChatModel(abc.ABC):
    #: Logged with every generation.
    name: str

    @abc.abstractmethod
    def stream(self, messages: Sequence[Message]) -> AsyncGenerator[Delta]:
        """Stream the answer to ``messages``; use with ``contextlib.aclosing``."""

    async def close(self) -> None:  # noqa: B027 (most models hold nothing to release)
        """Release connections; called when the server stops."""


class OpenAIModel(ChatModel):
    """``chat.completions.create(stream=True)`` on the official SDK's ``AsyncOpenAI``."""

    def __init__(self, settings: ChatSettings) -> None:
        self.name = settings.model
        self._settings = settings
        self.client = openai.AsyncOpenAI(
            # Local servers (Ollama, vLLM, llama.cpp) take any key, but the SDK insists on one.
            api_key=settings.api_key or "unused",
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            timeout=openai.Timeout(max(settings.first_token_timeout, settings.stall_timeout), connect=10.0),
        )

    async def stream(self, messages: Sequence[Message]) -> AsyncGenerator[Delta]:
        settings = self._settings
        stream = await self.client.chat.completions.create(
            model=settings.model,
            messages=cast("list[ChatCompletionMessageParam]", list(messages)),
            stream=True,
            temperature=openai.omit if settings.temperature is None else settings.temperature,
            max_tokens=openai.omit if settings.max_tokens is None else settings.max_tokens,
            stream_options={"include_usage": True} if settings.include_usage else openai.omit,
        )
        async with stream:
            async for chunk in stream:
                yield _delta(chunk)

    async def close(self) -> None:
        await self.client.close()


def _delta(chunk: Any) -> Delta:
    """``choices[0].delta.content`` (``""`` when absent), the finish reason and the usage."""
    try:
        usage = chunk.usage.model_dump(exclude_none=True) if chunk.usage is not None else None
        if not chunk.choices:
            return Delta(usage=usage)
        choice = chunk.choices[0]
        content = choice.delta.content if choice.delta is not None else None
        finish_reason = choice.finish_reason
    except (AttributeError, TypeError, IndexError) as exc:
        raise GenerationError(ErrorCategory.PROTOCOL, "The model provider sent a malformed chunk.") from exc
    if content is not None and not isinstance(content, str):
        raise GenerationError(ErrorCategory.PROTOCOL, "The model provider sent a chunk whose content is not text.")
    return Delta(content or "", finish_reason if isinstance(finish_reason, str) else None, usage)


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
