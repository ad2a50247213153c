"""Scenario ``burst``: the server alone streaming small messages to one subscriber, no model involved.

One client subscribed to ``EchoChannel`` performs ``burst {n}``: the channel broadcasts
``{"seq": i}`` for i in 1..n in a loop, to the stream the client is on. The rate is n / time
from the perform to the last message decoded. It is the pure-server counterpart of
:mod:`bench.stream` (no upstream HTTP, no fake): on Rails the loop runs on one worker thread and
the deliveries on the pool.
"""

from __future__ import annotations

import sys
from functools import partial

from .fanout import IDENTIFIER
from .report import Cell, Metric, Table
from .scenario import LOADGEN_CPU, Context, Incomplete, Window, measure, require_all
from .servers import ORIGIN

NAME = "burst"
TITLE = "Burst: one subscriber, n broadcasts from a loop in the channel"
RATE = Metric("messages per second", "/s", "higher")
CPU = Metric("server CPU per message", "µs")
METRICS = (RATE, CPU, LOADGEN_CPU)


def sizes(ctx: Context) -> list[int]:
    """Messages: ``--burst-messages``, else 20,000 (quick: 2,000)."""
    return ctx.options.burst_messages or ([2_000] if ctx.quick else [20_000])


def run(ctx: Context, table: Table) -> None:
    """Every size, on each server."""
    timeout = 30.0 if ctx.quick else 120.0
    table.notes = [f"EchoChannel `burst`: n broadcasts of `{{seq: i}}` to the subscriber's own stream; at most {timeout:.0f} s."]

    def one(kind: str, count: int) -> dict[Metric, Cell]:
        with ctx.serving(kind) as server:
            require_all(ctx.loadgen.connect(server.port, ["burst0"], IDENTIFIER, origin=ORIGIN))
            window = Window(server, ctx.loadgen)
            replies = ctx.loadgen.call("burst", {"count": count, "timeout": timeout}, timeout + 30)
            window.stop()
        reply = max(replies, key=lambda r: r["received"])
        if not reply["received"]:
            raise Incomplete(f"{kind}: no message within {timeout:.0f} s")
        note = "" if reply["received"] == count else f"{kind}: {reply['received']:,}/{count:,} messages within {timeout:.0f} s"
        seconds = max(reply["last"] - reply["started"], 1) / 1e9
        return {
            RATE: Cell(reply["received"] / seconds, note),
            CPU: Cell(1e6 * window.server_cpu / reply["received"], note),
            LOADGEN_CPU: window.loadgen_cell(),
        }

    for count in sizes(ctx):
        measure(ctx, table, f"{count:,} messages", METRICS, partial(one, count=count))


if __name__ == "__main__":
    from .__main__ import main

    main(["--only", NAME, *sys.argv[1:]])
