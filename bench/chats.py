"""Scenario ``chats``: N users chatting at once through GptChatChannel, the model writing 20 tokens/s each.

Each user has its own connection and room and sends one ``send_message`` at the same moment as
the others; the fake OpenAI server answers each with 100 time-stamped chunks at 20 tokens/s
(5 s). Chunk latency is as in :mod:`bench.stream` (the fake wrote it -> the client decoded it);
first chunk is the time from the client sending ``send_message`` to it decoding the first
chunk, which includes the fake's 50 ms pause before its first token (and the time to make the
request); first chunk added is that chunk's latency alone (the fake wrote it -> decoded).

On Rails, ``send_message`` holds one of ActionCable's 4 worker threads for the whole answer, and
the same pool delivers broadcasts: with more chats than threads, answers wait for a free thread
and every chunk waits behind the queued answers. That is Rails' default behaviour and the benchmark keeps it.
"""

from __future__ import annotations

import sys
from functools import partial

from .report import Cell, Metric, Table
from .scenario import LOADGEN_CPU, Context, measure
from .servers import fake_openai
from .stream import ask

NAME = "chats"
TITLE = "Concurrent chats: users streaming answers at 20 tokens/s at the same time"
P50 = Metric("chunk latency p50", "ms")
P99 = Metric("chunk latency p99", "ms")
FIRST_P50 = Metric("first chunk p50", "ms")
FIRST_P99 = Metric("first chunk p99", "ms")
ADDED_P50 = Metric("first chunk added over the model p50", "ms")
ADDED_P99 = Metric("first chunk added over the model p99", "ms")
DONE = Metric("answers complete", "%", "higher")
CPU = Metric("server CPU per chunk", "µs")
FAKE_CPU = Metric("fake OpenAI CPU (% of one core)", "%", "")
METRICS = (P50, P99, FIRST_P50, FIRST_P99, ADDED_P50, ADDED_P99, DONE, CPU, FAKE_CPU, LOADGEN_CPU)
RATE = 20.0


def sizes(ctx: Context) -> list[int]:
    """Concurrent chats: ``--chats``, else 20 and 100 (quick: 5 and 10)."""
    return ctx.options.chats or ([5, 10] if ctx.quick else [20, 100])


def run(ctx: Context, table: Table) -> None:
    """Every size, on each server."""
    chunks = ctx.options.chat_chunks or (20 if ctx.quick else 100)
    timeout = max(15.0, 8 * chunks / RATE)
    table.notes = [
        f"Each chat: one answer of {chunks} chunks at {RATE:g} tokens/s ({chunks / RATE:g} s); at most {timeout:.0f} s. "
        "Our server runs with CABLE_LLM_MAX_CONCURRENT=1000 (default 64). Rails runs `send_message` on its worker "
        "pool of 4 threads, which also delivers the broadcasts."
    ]

    def one(kind: str, chats: int) -> dict[Metric, Cell]:
        with fake_openai() as (url, fake_pid), ctx.serving(kind, "chat", url) as server:
            answers, note = ask(ctx, server, fake_pid, chats, chunks, RATE, timeout)
        window = answers.window
        return {
            **answers.latency_cells(P50, P99, answers.latencies_ms, note),
            **answers.latency_cells(FIRST_P50, FIRST_P99, answers.first_ms, note),
            **answers.latency_cells(ADDED_P50, ADDED_P99, answers.first_added_ms, note),
            DONE: Cell(100 * answers.ends.get("done", 0) / chats, note),
            CPU: Cell(1e6 * window.server_cpu / answers.chunks) if answers.chunks else Cell(None, note),
            FAKE_CPU: Cell(100 * window.others_cpu[0] / window.seconds),
            LOADGEN_CPU: window.loadgen_cell(),
        }

    for chats in sizes(ctx):
        measure(ctx, table, f"{chats} chats", METRICS, partial(one, chats=chats))


if __name__ == "__main__":
    from .__main__ import main

    main(["--only", NAME, *sys.argv[1:]])
