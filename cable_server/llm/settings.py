"""Settings of the chat generations, from arguments or the environment."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..config import invalid_numbers

__all__ = ["ChatSettings", "SettingsError"]

#: The SDK transports ``http_client`` may name.
HTTP_CLIENTS = ("aiohttp", "httpx")


class SettingsError(ValueError):
    """A chat setting that cannot take the value given; the message names its variable."""


#: The words a boolean variable may hold, either case. Anything else refuses to start: a typo of
#: "false" read as true would silently undo what an operator meant to pin.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _flag(variable: str, value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    accepted = ", ".join((*TRUE_WORDS, *FALSE_WORDS))
    raise SettingsError(f"{variable} must be one of {accepted} (either case), got {value!r}")


@dataclass(frozen=True, slots=True)
class ChatSettings:
    """How ``GptChatChannel`` talks to the model; every field has a ``CABLE_LLM_*`` variable.

    ``api_key`` and ``base_url`` fall back to the SDK's own ``OPENAI_API_KEY`` and
    ``OPENAI_BASE_URL``. With neither a key nor a base URL the built-in offline model answers.
    """

    api_key: str | None = None
    base_url: str | None = None
    model: str = "gpt-4o-mini"
    temperature: float | None = None
    #: The longest answer asked for, in tokens (0 or ``None``: the provider's default, which may
    #: be the model's whole context). It is also what the budget below reserves for an answer.
    max_tokens: int | None = 2048
    #: The system prompt; a client's ``system_content`` replaces it only if allowed below.
    system_prompt: str | None = None
    #: Honour ``system_content`` sent by the client (the original channel does).
    allow_client_system_prompt: bool = True
    #: Ask for ``usage`` in the stream (``stream_options.include_usage``).
    include_usage: bool = True
    #: Seconds from the request until the first token (the SDK's retries included).
    first_token_timeout: float = 60.0
    #: Seconds without a chunk, once streaming, before the generation is abandoned.
    stall_timeout: float = 30.0
    #: The SDK's retries, which happen only before the first token.
    max_retries: int = 2
    #: The SDK's HTTP transport: ``aiohttp`` (its ``DefaultAioHttpClient``: about half the CPU
    #: per streamed chunk) or ``httpx`` (its default client).
    http_client: str = "aiohttp"
    #: Connections to the provider kept open at most (streaming answers each hold one, and
    #: idle ones are kept for the next request); 0: as many as ``max_concurrent``.
    http_max_connections: int = 0
    #: Generations streaming at once in this process; more wait in a fair queue.
    max_concurrent: int = 64
    #: Requests allowed to wait for a free slot; beyond it they fail as ``overloaded``.
    max_queued: int = 1_000
    #: The share of those one client address may hold: slots streaming, and places in line (a
    #: freed slot goes to the address holding the fewest); 0: no share, first come first served.
    max_concurrent_per_address: int = 16
    max_queued_per_address: int = 100
    #: Generations one user (an identified connection's identifier, else one connection) may
    #: have running at once, across rooms; one more is refused as ``busy``. A room has one at a
    #: time anyway; this stops an anonymous connection from starting answers in many rooms.
    max_generations_per_user: int = 2
    #: Messages of a room's conversation given to the model, and their approximate size in
    #: tokens (4 characters each); 0 messages: no memory, and nothing kept (the Rails original).
    history_messages: int = 20
    history_tokens: int = 4_000
    #: Messages of a room's transcript kept (what ``history`` returns, every turn marked).
    transcript_messages: int = 200
    #: Bytes of messages one ``history`` frame carries at most (the latest; the newest always).
    history_frame_bytes: int = 256 << 10
    #: Bytes of one room's transcript kept (the oldest messages go first; the newest always stays).
    history_room_bytes: int = 1 << 20
    #: Bytes of history kept in all rooms together (the rooms least recently written are forgotten
    #: first): in process, by each process; in Redis, by all processes sharing the prefix together.
    #: And seconds a room's history is kept after its last turn.
    history_max_bytes: int = 32 << 20
    history_ttl: float = 86_400.0
    #: The model budget a minute (:mod:`cable_server.llm.budget`): requests and estimated tokens
    #: (question and system prompt at 4 characters a token, plus ``max_tokens``) per requester
    #: (the identified user, or the one anonymous connection), per client address, and in all;
    #: 0 leaves a measure unbounded. Past one, a request is refused with ``rate_limited`` and
    #: ``retry_after`` to the sender alone, and nothing goes upstream.
    requests_per_minute_per_user: int = 20
    tokens_per_minute_per_user: int = 60_000
    requests_per_minute_per_address: int = 120
    tokens_per_minute_per_address: int = 300_000
    requests_per_minute: int = 1_200
    tokens_per_minute: int = 3_000_000
    #: Anonymous rooms visited a minute (joining one, ``history``, ``resume``) per connection and
    #: per client address. On an anonymous connection a room id is a capability, and the blog's are
    #: numbers: 100 sockets read 20,000 rooms' transcripts in 15 s. Past it a subscription is
    #: rejected, ``history`` and ``resume`` get ``rate_limited``; identified connections, which
    #: reach their own room only, are counted for replays only (``resume``, a request sent again:
    #: one visit, and one more per 1,000 frames replayed). 0: unbounded.
    room_visits_per_minute_per_connection: int = 60
    room_visits_per_minute_per_address: int = 300
    #: Longest accepted ``user_content``, in characters.
    max_prompt_chars: int = 32_000
    #: Longest accepted client ``system_content`` (when honoured), in characters: a longer one is
    #: refused like a long ``user_content`` (``invalid_request``), never cut, so the model never
    #: answers to half an instruction.
    max_system_prompt_chars: int = 8_000
    #: Append what the model provider said to the ``message`` of error frames (it can name the
    #: key's last digits, the organisation or internal hosts, and reaches every reader of the
    #: room): for development. Off, it is only logged.
    expose_provider_errors: bool = False
    #: ``redis://...``: keep the rooms' history and the frames kept for ``resume`` in Redis, shared
    #: by every process (default: in process; with ``CABLE_PUBSUB_URL`` on Redis, that Redis).
    #: Keys use ``history_prefix``.
    history_url: str | None = None
    history_prefix: str | None = None
    #: Seconds a generation goes on with no subscriber left in its room (0: cancel at once), so
    #: that a user whose socket dropped finds the rest of the answer when resuming.
    orphan_grace: float = 30.0
    #: Seconds a generation's frames stay available to ``resume`` after its last frame, and
    #: how many of its frames are kept at most.
    resume_ttl: float = 300.0
    resume_max_frames: int = 20_000
    #: In process: characters of frames kept for ``resume`` in all (the oldest answers go first).
    resume_max_bytes: int = 64 << 20
    #: Pace of the offline model, in tokens per second.
    offline_tokens_per_second: float = 40.0

    def __post_init__(self) -> None:
        if self.http_client not in HTTP_CLIENTS:
            raise SettingsError(f"CABLE_LLM_HTTP_CLIENT must be one of {', '.join(HTTP_CLIENTS)}, got {self.http_client!r}")
        for name in ("max_concurrent", "resume_max_frames"):  # 0 would be no slot, no frame: nothing answers
            if getattr(self, name) < 1:
                raise SettingsError(f"CABLE_LLM_{name.upper()} must be 1 or more, got {getattr(self, name)!r}")
        if invalid := invalid_numbers(self):
            raise SettingsError(f"CABLE_LLM_{invalid[0].upper()} must be a number, 0 or more, got {getattr(self, invalid[0])!r}")

    @property
    def offline(self) -> bool:
        """No key and no endpoint: answer with the built-in offline model."""
        return not self.api_key and not self.base_url

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> ChatSettings:
        """Read ``OPENAI_API_KEY``, ``OPENAI_BASE_URL`` and ``CABLE_LLM_<FIELD>`` variables."""
        env = os.environ if env is None else env
        pubsub = env.get("CABLE_PUBSUB_URL") or ""
        values: dict[str, object] = {
            "api_key": env.get("OPENAI_API_KEY") or None,
            "base_url": env.get("OPENAI_BASE_URL") or None,
            "history_url": pubsub if pubsub.startswith(("redis://", "rediss://", "unix://")) else None,
            "history_prefix": env.get("CABLE_CHANNEL_PREFIX") or None,
        }
        for spec in dataclasses.fields(cls):
            variable = f"CABLE_LLM_{spec.name.upper()}"
            raw = env.get(variable)
            if raw is None:
                continue
            kind = str(spec.type).replace(" | None", "")
            if kind == "bool":
                values[spec.name] = _flag(variable, raw)
            elif kind in ("int", "float"):
                try:
                    values[spec.name] = int(raw) if kind == "int" else float(raw)
                except ValueError:
                    raise SettingsError(f"{variable} must be a number, got {raw!r}") from None
            else:
                values[spec.name] = raw
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
