"""Scenario ``fanout``: one broadcast to N subscribers of one stream (websocket-shootout style).

    .venv/bin/python -m bench.fanout          # this scenario alone: python -m bench --only fanout

N clients subscribe to ``EchoChannel`` room ``bench`` (stream ``echo_bench``). The benchmark's
parent process broadcasts through the fixture's admin hook (``POST /__admin/broadcast``, which
calls ``ActionCable.server.broadcast`` on Rails and ``CableServer.broadcast`` on ours) a
message carrying its index, the ``time.monotonic_ns()`` at which it was sent (the clock is the
same in every process on Linux) and 200 bytes of padding. Each client notes the delay when it
decodes the frame. The next broadcast is sent once every client had the previous one, so they
never overlap; one that does not reach everyone within the bound ends the series.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from functools import partial

from .report import Cell, Metric, Table
from .scenario import LOADGEN_CPU, Context, Incomplete, Window, measure, require_all
from .servers import ORIGIN

NAME = "fanout"
TITLE = "Broadcast fan-out: one broadcast to N subscribers"
IDENTIFIER = json.dumps({"channel": "EchoChannel", "room": "bench"})
P50 = Metric("delivery p50", "ms")
P99 = Metric("delivery p99", "ms")
ALL = Metric("all received", "ms")
CPU = Metric("server CPU per delivered message", "µs")
LOADGEN_PER_MESSAGE = Metric("load generator CPU per delivered message", "µs", "")
METRICS = (P50, P99, ALL, CPU, LOADGEN_PER_MESSAGE, LOADGEN_CPU)


def sizes(ctx: Context) -> list[int]:
    """Subscriber counts: ``--fanout-clients``, else 100, 1,000, 5,000, 10,000 (quick: 100, 500)."""
    return ctx.options.fanout_clients or ([100, 500] if ctx.quick else [100, 1_000, 5_000, 10_000])


def run(ctx: Context, table: Table) -> None:
    """Every size, on each server."""
    broadcasts = ctx.options.broadcasts or (5 if ctx.quick else 20)
    table.notes = [
        f"{broadcasts} broadcasts of ~250 bytes (timestamp + 200 bytes of padding) through `POST /__admin/broadcast`, "
        "each sent once the previous one reached every client; p50, p99 and the time until the last client had it "
        "are per broadcast, then the median over broadcasts. Server CPU over the series / messages delivered."
    ]
    for clients in sizes(ctx):
        measure(ctx, table, f"{clients:,} clients", METRICS, partial(_one, ctx, clients=clients, broadcasts=broadcasts))


def _one(ctx: Context, kind: str, clients: int, broadcasts: int) -> dict[Metric, Cell]:
    bound = (5 if ctx.quick else 10) + clients / 500  # seconds for one broadcast to reach everyone
    with ctx.serving(kind) as server:
        require_all(ctx.loadgen.connect(server.port, [f"fan{i}" for i in range(clients)], IDENTIFIER, origin=ORIGIN))
        ctx.loadgen.call("fanout_arm")

        def broadcast(index: int) -> bool:
            server.broadcast("echo_bench", {"i": index, "sent": time.monotonic_ns(), "padding": "x" * 200})
            return ctx.loadgen.wait_event("all", index, bound)

        if not broadcast(0):  # a warm-up, not counted
            raise Incomplete(f"the first broadcast did not reach all {clients:,} clients in {bound:.0f} s")
        window = Window(server, ctx.loadgen)
        complete = 0
        for index in range(1, broadcasts + 1):
            if not broadcast(index):
                break
            complete += 1
            time.sleep(0.02)
        window.stop()
        merged: dict[int, list[float]] = {}
        for reply in ctx.loadgen.call("fanout_collect"):
            for index, raw in reply.items():
                merged.setdefault(index, []).extend(ns / 1e6 for ns in memoryview(raw).cast("q"))
    delivered = sum(len(merged.get(index, ())) for index in range(1, broadcasts + 1))
    series = [sorted(merged[index]) for index in range(1, complete + 1)]
    note = ""
    if complete < broadcasts:
        reached = len(merged.get(complete + 1, ()))
        note = f"{kind}: broadcast {complete + 1} reached {reached:,}/{clients:,} clients in {bound:.0f} s"
        note += f"; figures over the {complete} before"
        if not series:
            raise Incomplete(note)
    return {
        P50: Cell(statistics.median(s[len(s) // 2] for s in series), note),
        P99: Cell(statistics.median(s[min(len(s) - 1, int(0.99 * len(s)))] for s in series), note),
        ALL: Cell(statistics.median(s[-1] for s in series), note),
        CPU: Cell(1e6 * window.server_cpu / max(delivered, 1), note),
        LOADGEN_PER_MESSAGE: Cell(1e6 * sum(window.loadgen_cpu) / max(delivered, 1)),
        LOADGEN_CPU: window.loadgen_cell(),
    }


if __name__ == "__main__":
    from .__main__ import main

    main(["--only", NAME, *sys.argv[1:]])
