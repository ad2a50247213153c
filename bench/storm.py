"""Scenario ``storm``: N clients connecting at once, ``--storm-concurrency`` (200) of them in flight.

Each client opens a TCP connection, upgrades it, waits for ``welcome``, subscribes to
``EchoChannel`` and waits for ``confirm_subscription``: that whole path is one connection here.
The rate is clients confirmed / time from the first connect to the last confirmation; the
server's CPU over the storm is divided by the clients. Ten clients connect first so that code
loaded on the first connection is not counted.
"""

from __future__ import annotations

import sys
from functools import partial

from .common import pct
from .fanout import IDENTIFIER
from .report import Cell, Metric, Table
from .scenario import LOADGEN_CPU, Context, Window, measure, require_all
from .servers import ORIGIN

NAME = "storm"
TITLE = "Connect storm: clients connecting at once"
RATE = Metric("clients subscribed per second", "/s", "higher")
P50 = Metric("connect to confirm_subscription p50", "ms")
P99 = Metric("connect to confirm_subscription p99", "ms")
CPU = Metric("server CPU per connection", "µs")
METRICS = (RATE, P50, P99, CPU, LOADGEN_CPU)


def sizes(ctx: Context) -> list[int]:
    """Client counts: ``--storm-clients``, else 2,000 (quick: 200)."""
    return ctx.options.storm_clients or ([200] if ctx.quick else [2_000])


def run(ctx: Context, table: Table) -> None:
    """Every size, on each server."""
    concurrency = ctx.options.storm_concurrency
    table.notes = [f"{concurrency} connections in flight at a time; each one: TCP, upgrade, welcome, subscribe, confirmation."]
    for clients in sizes(ctx):
        measure(ctx, table, f"{clients:,} clients", METRICS, partial(_one, ctx, clients=clients, concurrency=concurrency))


def _one(ctx: Context, kind: str, clients: int, concurrency: int) -> dict[Metric, Cell]:
    with ctx.serving(kind) as server:
        require_all(ctx.loadgen.connect(server.port, [f"warm{i}" for i in range(10)], IDENTIFIER, origin=ORIGIN))
        window = Window(server, ctx.loadgen)
        users = [f"storm{i}" for i in range(clients)]
        result = ctx.loadgen.connect(server.port, users, IDENTIFIER, origin=ORIGIN, concurrency=concurrency)
        window.stop()
    require_all(result)
    return {
        RATE: Cell(result.ok / result.seconds),
        P50: Cell(pct(result.durations_ms, 0.5)),
        P99: Cell(pct(result.durations_ms, 0.99)),
        CPU: Cell(1e6 * window.server_cpu / result.ok),
        LOADGEN_CPU: window.loadgen_cell(),
    }


if __name__ == "__main__":
    from .__main__ import main

    main(["--only", NAME, *sys.argv[1:]])
