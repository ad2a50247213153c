"""Scenario ``stream``: one subscriber receiving a long answer flat out through GptChatChannel.

    .venv/bin/python -m bench --only stream

Three processes besides the load generator: the fake OpenAI server (``python -m
cable_server.testing --scripted``: a prompt ``{"chunks": N, "rate": R}`` gets N chunks whose text
is the ``time.monotonic_ns()`` at which each was written to the socket), the server's chat app
(ours: ``cable-server`` with the real ``openai`` SDK; Rails: ``bench/rails/config.ru``'s
``Net::HTTP`` channel) and the client. A chunk's latency is the time from the fake writing it to
the client having decoded its frame: everything the server adds (reading and parsing the
upstream stream, encoding, broadcasting, the WebSocket write) plus loopback hops.

:func:`ask` (used by :mod:`bench.chats` too) is the shared part.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from .common import pct
from .report import Cell, Metric, Table
from .scenario import LOADGEN_CPU, Context, Incomplete, Window, measure, require_all
from .servers import ORIGIN, Server, fake_openai

NAME = "stream"
TITLE = "Token streaming: one subscriber, one long answer as fast as the fake model writes it"
RATE = Metric("chunks per second", "/s", "higher")
P50 = Metric("chunk latency p50", "ms")
P99 = Metric("chunk latency p99", "ms")
CPU = Metric("server CPU per chunk", "µs")
FAKE_CPU = Metric("fake OpenAI CPU (% of one core)", "%", "")
METRICS = (RATE, P50, P99, CPU, FAKE_CPU, LOADGEN_CPU)


@dataclass
class Answers:
    """What the chats of one round received, over every load-generator process."""

    chats: int
    latencies_ms: list[float]
    first_ms: list[float]
    #: The first chunk of each answer: the fake wrote it -> the client decoded it.
    first_added_ms: list[float]
    ends: dict[str, int]
    seconds: float
    window: Window

    @property
    def chunks(self) -> int:
        """Content chunks received, over every chat."""
        return len(self.latencies_ms)

    def note(self, kind: str, timeout: float) -> str:
        """Empty when every answer ended with ``done``; else how many did, and how."""
        done = self.ends.get("done", 0)
        if done == self.chats:
            return ""
        others = ", ".join(f"{count} {event}" for event, count in self.ends.items() if event != "done")
        return f"{kind}: {done}/{self.chats} answers done within {timeout:.0f} s{f' ({others})' if others else ''}"

    def latency_cells(self, p50: Metric, p99: Metric, values: list[float], note: str) -> dict[Metric, Cell]:
        """p50 and p99 of ``values``, or why there are none."""
        if not values:
            return {p50: Cell(None, note or "no chunk"), p99: Cell(None, note or "no chunk")}
        return {p50: Cell(statistics.median(values), note), p99: Cell(pct(values, 0.99), note)}


def ask(
    ctx: Context,
    server: Server,
    others: Sequence[int],
    chats: int,
    chunks: int,
    rate: float,
    timeout: float,
) -> tuple[Answers, str]:
    """``chats`` clients (own connection and room each) ask at once for ``chunks`` chunks at ``rate``
    tokens/s (0: flat out) and read until their answer ends or ``timeout``; their answers and a
    note (empty when all were complete). ``others``: processes whose CPU the window reads too
    (the fake OpenAI server first)."""
    users = [f"chat{i}" for i in range(chats)]
    identifiers: list[str | None] = [json.dumps({"channel": "GptChatChannel", "room": user}) for user in users]
    require_all(ctx.loadgen.connect(server.port, users, identifiers, origin=ORIGIN))
    window = Window(server, ctx.loadgen, others)
    prompt = json.dumps({"chunks": chunks, "rate": rate})
    replies = ctx.loadgen.call("chat", {"prompt": prompt, "timeout": timeout}, timeout + 30)
    window.stop()
    ends: dict[str, int] = {}
    for reply in replies:
        for event, count in reply["ends"].items():
            ends[event] = ends.get(event, 0) + count
    last = max(reply["last"] for reply in replies)
    started = min(reply["started"] for reply in replies if reply["chats"])
    answers = Answers(
        chats=chats,
        latencies_ms=[ns / 1e6 for reply in replies for ns in memoryview(reply["latencies"]).cast("q")],
        first_ms=[ns / 1e6 for reply in replies for ns in memoryview(reply["first"]).cast("q")],
        first_added_ms=[ns / 1e6 for reply in replies for ns in memoryview(reply["first_added"]).cast("q")],
        ends=ends,
        seconds=max(last - started, 1) / 1e9,
        window=window,
    )
    return answers, answers.note(server.kind, timeout)


def sizes(ctx: Context) -> list[int]:
    """Chunks in the answer: ``--stream-chunks``, else 20,000 (quick: 2,000)."""
    return ctx.options.stream_chunks or ([2_000] if ctx.quick else [20_000])


def run(ctx: Context, table: Table) -> None:
    """Every size, on each server."""
    timeout = 30.0 if ctx.quick else 120.0
    table.notes = [
        "Chunks/s = chunks / (time from send_message to the last chunk decoded). Latency = the fake wrote the "
        "chunk -> the client decoded its frame; when the server is slower than the fake, chunks queue and this "
        f"grows with the answer. At most {timeout:.0f} s."
    ]

    def one(kind: str, chunks: int) -> dict[Metric, Cell]:
        with fake_openai() as (url, fake_pid), ctx.serving(kind, "chat", url) as server:
            answers, note = ask(ctx, server, [fake_pid], 1, chunks, 0, timeout)
        if not answers.chunks:
            raise Incomplete(note or f"{kind}: no chunk")
        window = answers.window
        return {
            RATE: Cell(answers.chunks / answers.seconds, note),
            **answers.latency_cells(P50, P99, answers.latencies_ms, note),
            CPU: Cell(1e6 * window.server_cpu / answers.chunks, note),
            FAKE_CPU: Cell(100 * window.others_cpu[0] / window.seconds),
            LOADGEN_CPU: window.loadgen_cell(),
        }

    for chunks in sizes(ctx):
        measure(ctx, table, f"{chunks:,} chunks", METRICS, partial(one, chunks=chunks))


if __name__ == "__main__":
    from .__main__ import main

    main(["--only", NAME, *sys.argv[1:]])
