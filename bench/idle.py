"""Scenario ``idle``: what N subscribed clients that say nothing cost the server, in memory and in CPU.

Ten clients connect first (so that code loaded on the first connection is not counted), then the
resident memory is read; then N clients connect and subscribe to ``EchoChannel`` and stay quiet.
After a short settle, a quiet window (15 s: five ActionCable heartbeats of 3 s) measures the
server's CPU: the price of pinging every connection. The clients keep reading throughout; the
pings they received per client in the window are shown as proof. Memory per connection is
(RSS after the window - RSS before the N) / N.
"""

from __future__ import annotations

import sys
import time
from functools import partial

from .fanout import IDENTIFIER
from .report import Cell, Metric, Table
from .scenario import LOADGEN_CPU, Context, Window, measure, require_all
from .servers import ORIGIN

NAME = "idle"
TITLE = "Idle connections: memory and heartbeat CPU"
PER_CONNECTION = Metric("server RSS per connection", "KiB")
TOTAL = Metric("server RSS with all connected", "MiB")
CPU = Metric("server CPU while idle (% of one core)", "%")
PINGS = Metric("pings received per client in the window", "", "")
METRICS = (PER_CONNECTION, TOTAL, CPU, PINGS, LOADGEN_CPU)
WARM = 10


def sizes(ctx: Context) -> list[int]:
    """Connection counts: ``--idle-clients``, else 1,000, 10,000, 15,000 (quick: 200)."""
    return ctx.options.idle_clients or ([200] if ctx.quick else [1_000, 10_000, 15_000])


def run(ctx: Context, table: Table) -> None:
    """Every size, on each server."""
    seconds = ctx.options.idle_seconds or (3.5 if ctx.quick else 15.0)
    table.notes = [
        f"Quiet window of {seconds:g} s (heartbeat every 3 s on both servers). "
        f"RSS per connection = (RSS after the window - RSS with {WARM} warm-up clients) / N."
    ]
    for clients in sizes(ctx):
        measure(ctx, table, f"{clients:,} clients", METRICS, partial(_one, ctx, clients=clients, seconds=seconds))


def _one(ctx: Context, kind: str, clients: int, seconds: float) -> dict[Metric, Cell]:
    with ctx.serving(kind) as server:
        require_all(ctx.loadgen.connect(server.port, [f"warm{i}" for i in range(WARM)], IDENTIFIER, origin=ORIGIN))
        time.sleep(0.5)
        before = server.rss()
        require_all(ctx.loadgen.connect(server.port, [f"idle{i}" for i in range(clients)], IDENTIFIER, origin=ORIGIN))
        time.sleep(0.5 if ctx.quick else 2.0)
        pings = ctx.loadgen.stats()["pings"]
        window = Window(server, ctx.loadgen)
        time.sleep(seconds)
        window.stop()
        stats = ctx.loadgen.stats()
        after = server.rss()
    dropped = clients + WARM - stats["open"]
    note = f"{kind}: {dropped:,} clients were disconnected during the window" if dropped else ""
    return {
        PER_CONNECTION: Cell((after - before) / clients / 1024, note),
        TOTAL: Cell(after / 2**20, note),
        CPU: Cell(100 * window.server_cpu / window.seconds, note),
        PINGS: Cell((stats["pings"] - pings) / (clients + WARM), note),
        LOADGEN_CPU: window.loadgen_cell(),
    }


if __name__ == "__main__":
    from .__main__ import main

    main(["--only", NAME, *sys.argv[1:]])
