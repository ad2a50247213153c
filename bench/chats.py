"""Scenario ``chats``: N users chatting at once through GptChatChannel, the model writing 20 tokens/s each.

Each user has its own connection and room and sends one ``send_message`` at the same moment as
the others; the fake OpenAI server answers each with 100 time-stamped chunks at 20 tokens/s
(5 s). Chunk latency is as in :mod:`bench.stream` (the fake wrote it -> the client decoded it);
first chunk is the time from the client sending ``send_message`` to it decoding the first
chunk, which includes the fake's 50 ms pause before its first token (and the time to make the
request); first chunk added is that chunk's latency alone (the fake wrote it -> decoded).

The Redis rows run ours as ``--workers 2 --pubsub redis://`` on a fresh ``redis-server``: every
frame is stored in Redis (for ``resume`` on any worker) and published through it, and the
server CPU is both workers' (and their supervisor's); Redis' own CPU is a row.

On Rails, ``send_message`` holds one of ActionCable's 4 worker threads for the whole answer, and
the same pool delivers broadcasts: with more chats than threads, answers wait for a free thread
and every chunk waits behind the queued answers. That is Rails' default behaviour and the
benchmark keeps it; Rails is measured up to 100 chats (beyond, no answer completes in the time).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from functools import partial

from .report import Cell, Metric, Table
from .scenario import LOADGEN_CPU, Context, measure
from .servers import fake_openai, redis
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
SERVER_CPU = Metric("server CPU (% of one core)", "%", "")
FAKE_CPU = Metric("fake OpenAI CPU (% of one core)", "%", "")
REDIS_CPU = Metric("Redis CPU (% of one core)", "%", "")
METRICS = (P50, P99, FIRST_P50, FIRST_P99, ADDED_P50, ADDED_P99, DONE, CPU, SERVER_CPU, FAKE_CPU, LOADGEN_CPU)
RATE = 20.0
#: Rails' 4 worker threads complete nothing within the time beyond this many chats.
RAILS_MOST = 100
#: ``--workers`` of the Redis rows.
WORKERS = 2


def sizes(ctx: Context) -> list[int]:
    """Concurrent chats: ``--chats``, else 20, 100, 300 and 1,000 (quick: 10)."""
    return ctx.options.chats or ([10] if ctx.quick else [20, 100, 300, 1000])


def redis_sizes(ctx: Context) -> list[int]:
    """Concurrent chats on Redis with ``--workers 2``: ``--redis-chats``, else 300 and 1,000 (quick: 10)."""
    return ctx.options.redis_chats or ([10] if ctx.quick else [300, 1000])


@contextlib.contextmanager
def _redis_if(wanted: bool) -> Iterator[tuple[str | None, int | None]]:
    if not wanted:
        yield None, None
        return
    with redis() as (url, pid):
        yield url, pid


def run(ctx: Context, table: Table) -> None:
    """Every size, on each server; then the Redis sizes, on ours."""
    chunks = ctx.options.chat_chunks or (20 if ctx.quick else 100)
    timeout = max(15.0, 8 * chunks / RATE)
    table.notes = [
        f"Each chat: one answer of {chunks} chunks at {RATE:g} tokens/s ({chunks / RATE:g} s); at most {timeout:.0f} s. "
        "Our server runs with CABLE_LLM_MAX_CONCURRENT=1000 (default 64). Rails runs `send_message` on its worker "
        f"pool of 4 threads, which also delivers the broadcasts; it is measured up to {RAILS_MOST} chats. "
        f"The Redis rows: ours as `--workers {WORKERS} --pubsub redis://` (answers' frames stored and published "
        "in Redis), server CPU summed over the workers."
    ]

    def one(kind: str, chats: int, on_redis: bool = False) -> dict[Metric, Cell]:
        with fake_openai() as (url, fake_pid), _redis_if(on_redis) as (redis_url, redis_pid):
            options = {"pubsub": redis_url, "workers": WORKERS} if on_redis else {}
            with ctx.serving(kind, "chat", url, **options) as server:
                others = [fake_pid] if redis_pid is None else [fake_pid, redis_pid]
                answers, note = ask(ctx, server, others, chats, chunks, RATE, timeout)
        window = answers.window
        cells = {
            **answers.latency_cells(P50, P99, answers.latencies_ms, note),
            **answers.latency_cells(FIRST_P50, FIRST_P99, answers.first_ms, note),
            **answers.latency_cells(ADDED_P50, ADDED_P99, answers.first_added_ms, note),
            DONE: Cell(100 * answers.ends.get("done", 0) / chats, note),
            CPU: Cell(1e6 * window.server_cpu / answers.chunks) if answers.chunks else Cell(None, note),
            SERVER_CPU: Cell(100 * window.server_cpu / window.seconds),
            FAKE_CPU: Cell(100 * window.others_cpu[0] / window.seconds),
            LOADGEN_CPU: window.loadgen_cell(),
        }
        if on_redis:
            cells[REDIS_CPU] = Cell(100 * window.others_cpu[1] / window.seconds)
        return cells

    for chats in sizes(ctx):
        kinds = None if chats <= RAILS_MOST else ("ours",)
        measure(ctx, table, f"{chats:,} chats", METRICS, partial(one, chats=chats), kinds)
    for chats in redis_sizes(ctx):
        group = f"{chats:,} chats, {WORKERS} workers on Redis"
        measure(ctx, table, group, (*METRICS, REDIS_CPU), partial(one, chats=chats, on_redis=True), ("ours",))


if __name__ == "__main__":
    from .__main__ import main

    main(["--only", NAME, *sys.argv[1:]])
