"""A local OpenAI-compatible chat server speaking the real streaming wire format.

Tests (and benchmarks, and offline development) point the real ``openai`` SDK at it with
``base_url=fake.url``. Each request is answered by a scripted :class:`Reply`: the chunks and
their pacing, an error status with OpenAI's error body, a stall, an abrupt TCP close or a
malformed event. Every request is recorded, including whether the client hung up before the
answer was complete (what ``stop`` must cause).

It is written on raw asyncio streams, not on an HTTP framework, because the failures it must
produce (a connection cut mid-body, bytes that are not valid SSE) are what frameworks prevent.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FakeOpenAI", "Reply", "Request"]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}


@dataclass(frozen=True)
class Reply:
    """The script of one answer."""

    #: The ``delta.content`` pieces, one ``chat.completion.chunk`` each.
    chunks: Sequence[str] = ("Hello", ",", " world", "!")
    #: Seconds before each content chunk (the pace of the model).
    delay: float = 0.0
    #: Seconds before the response headers (a slow or unreachable model).
    headers_delay: float = 0.0
    finish_reason: str = "stop"
    #: Non-200: answer with OpenAI's error body instead of a stream.
    status: int = 200
    error_message: str = "error"
    error_code: str | None = None
    #: After this many content chunks: stop sending and hold the connection open.
    stall_after: int | None = None
    #: After this many content chunks: close the TCP connection without finishing the body.
    cut_after: int | None = None
    #: After this many content chunks: send an event whose data is not JSON.
    garbage_after: int | None = None
    #: Send ``data: [DONE]`` at the end.
    done: bool = True
    #: Replace each chunk's text by ``"<time.monotonic_ns() when written> "`` (latency benchmarks).
    stamped: bool = False

    @classmethod
    def error(cls, status: int, message: str, code: str | None = None) -> Reply:
        """An answer with HTTP ``status`` and OpenAI's error body."""
        return cls(status=status, error_message=message, error_code=code)

    @property
    def text(self) -> str:
        """The whole answer: the chunks joined."""
        return "".join(self.chunks)


@dataclass
class Request:
    """One request the fake received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    #: Set once the answer was sent completely, or the client went away.
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    #: The client closed the connection before the answer was complete.
    closed_early: bool = False
    #: Content chunks written before the end.
    sent: int = 0

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The ``messages`` of the request body."""
        messages: list[dict[str, Any]] = self.body.get("messages", [])
        return messages


@dataclass
class _Peer:
    """The client end of one connection, to notice it hanging up without reading from it
    (a pending read would race with the next request on a kept-alive connection)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @property
    def gone(self) -> bool:
        return self.reader.at_eof() or self.writer.transport.is_closing()


class FakeOpenAI:
    """``async with FakeOpenAI() as fake:`` then ``AsyncOpenAI(base_url=fake.url, api_key="k")``.

    Replies are taken from :meth:`push` in order; when none is queued, ``default`` answers
    (a :class:`Reply`, or a function of the :class:`Request` returning one).
    """

    def __init__(
        self, default: Reply | Callable[[Request], Reply] | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.default = default or Reply()
        self.host = host
        self.port = port
        self.requests: list[Request] = []
        self._queued: collections.deque[Reply] = collections.deque()
        self._server: asyncio.Server | None = None
        self._ids = itertools.count(1)
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    @property
    def url(self) -> str:
        """The ``base_url`` to give the SDK (``http://host:port/v1``)."""
        return f"http://{self.host}:{self.port}/v1"

    def push(self, *replies: Reply) -> None:
        """Answer the next requests with ``replies``, in order."""
        self._queued.extend(replies)

    async def start(self) -> FakeOpenAI:
        """Listen (on a free port unless one was given)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._server is not None:
            self._server.close()
            for writer in self._connections:
                writer.close()
            await asyncio.gather(*self._connections.values(), return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Wait until ``count`` requests arrived; returns all of them."""
        async with asyncio.timeout(timeout):
            while len(self.requests) < count:
                await asyncio.sleep(0.005)
        return self.requests

    # --- HTTP -------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[writer] = task
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.pop(writer, None)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {
            name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines if line)
        }
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        request = Request(path, headers, body)
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            await self._error(writer, Reply.error(404, f"Unknown request URL: {method} {path}", "unknown_url"))
            return True
        self.requests.append(request)
        default = self.default
        reply = self._queued.popleft() if self._queued else default if isinstance(default, Reply) else default(request)
        if reply.headers_delay:
            await asyncio.sleep(reply.headers_delay)
        if reply.status != 200:
            await self._error(writer, reply)
            request.ended.set()
            return True
        try:
            keep_alive = await self._stream(writer, request, reply, _Peer(reader, writer))
        except ConnectionError:
            keep_alive = False
        finally:
            if not request.ended.is_set():
                request.closed_early = True
                request.ended.set()
        return keep_alive

    async def _error(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        error_type = _ERROR_TYPES.get(reply.status, "server_error")
        body = json.dumps(
            {"error": {"message": reply.error_message, "type": error_type, "param": None, "code": reply.error_code}}
        )
        data = body.encode()
        writer.write(
            f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\nx-request-id: req_fake\r\n\r\n".encode()
            + data
        )
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter, request: Request, reply: Reply, peer: _Peer) -> bool:
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"transfer-encoding: chunked\r\ncache-control: no-cache\r\nx-request-id: req_fake\r\n\r\n"
        )
        completion = f"chatcmpl-fake{next(self._ids)}"
        model = str(request.body.get("model", "fake-model"))
        created = int(time.time())
        usage = bool((request.body.get("stream_options") or {}).get("include_usage"))

        def event(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            chunk: dict[str, Any] = {
                "id": completion,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if usage:
                chunk["usage"] = None
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        # A content chunk is the same JSON around its text: made once, so that the fake costs
        # little when a benchmark has it write 20,000 chunks a second.
        before, after = event({"content": _MARK}).split(json.dumps(_MARK).encode())

        def content(text: str) -> bytes:
            return before + json.dumps(text).encode() + after

        async def send(data: bytes) -> None:
            if peer.gone:
                raise ConnectionResetError("client went away")
            writer.write(b"%x\r\n%s\r\n" % (len(data), data))
            await writer.drain()

        await send(event({"role": "assistant", "content": "", "refusal": None}))
        for index, piece in enumerate(reply.chunks):
            if index == reply.stall_after:
                while not peer.gone:  # hold the connection until the client leaves
                    await asyncio.sleep(0.01)
                return False
            if index == reply.cut_after:
                writer.transport.abort()
                return False
            if index == reply.garbage_after:
                await send(b'data: {"id": "chatcmpl-broken", "choices": [\n\n')
            if reply.delay:
                await asyncio.sleep(reply.delay)
            await send(content(f"{time.monotonic_ns()} " if reply.stamped else piece))
            request.sent += 1
        await send(event({}, reply.finish_reason))
        if usage:
            prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.messages)
            counts = {"prompt_tokens": prompt_tokens, "completion_tokens": len(reply.chunks)}
            counts["total_tokens"] = counts["prompt_tokens"] + counts["completion_tokens"]
            tail = {
                "id": completion,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": counts,
            }
            await send(b"data: " + json.dumps(tail).encode() + b"\n\n")
        if reply.done:
            await send(b"data: [DONE]\n\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        request.ended.set()
        return True


#: Stands for the text in the template of a content chunk.
_MARK = "\u2063content\u2063"


def scripted(request: Request) -> Reply:
    """Benchmark script: a last user message ``{"chunks": N, "rate": tokens_per_second}``
    gets N time-stamped chunks at that pace (0: as fast as possible)."""
    try:
        script = json.loads(request.messages[-1]["content"])
        count, rate = int(script["chunks"]), float(script.get("rate", 0))
    except (ValueError, KeyError, TypeError, IndexError):
        return Reply()
    return Reply(chunks=["x"] * count, delay=1 / rate if rate > 0 else 0.0, stamped=True)


def main() -> None:
    """``python -m cable_server.testing``: serve paced canned answers for manual runs and benchmarks."""
    parser = argparse.ArgumentParser(description="A local OpenAI-compatible streaming chat server with canned answers.")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--tokens-per-second", type=float, default=20.0)
    parser.add_argument("--scripted", action="store_true", help="answer a JSON prompt {chunks, rate} with time-stamped chunks")
    args = parser.parse_args()
    text = "This answer comes from the local fake OpenAI server, streamed one token at a time."
    canned = Reply(chunks=re.findall(r"\s*\S+", text), delay=1 / args.tokens_per_second)

    def answer(request: Request) -> Reply:
        return scripted(request) if args.scripted else canned

    async def serve() -> None:
        async with FakeOpenAI(answer, port=args.port) as fake:
            print(f"fake OpenAI at {fake.url}", flush=True)
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.Event().wait()

    try:  # on uvloop when installed, as the servers it stands in front of
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(serve())
