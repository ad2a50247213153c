"""What every scenario needs: the run's context, a CPU window, and one place that turns failures into cells.

A scenario module has ``NAME``, ``TITLE``, ``sizes(ctx)`` and ``run(ctx, table)``; ``run``
calls :func:`measure` once per size, which runs the measurement against each server in turn
(ours, then Rails: back to back, so both see the same machine) and files the cells. A server
that fails to start, dies, or cannot keep up within the scenario's time bounds gets a note
instead of numbers, and the run goes on.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .common import ServerFailed, cpu_sample
from .loadgen import ConnectResult, LoadGen, LoadGenError
from .report import Cell, Metric, Table
from .servers import ORIGIN, Server, start

__all__ = ["LOADGEN_CPU", "Context", "Incomplete", "Window", "measure", "require_all"]

LOADGEN_CPU = Metric("load generator CPU (busiest process)", "%", "")


class Incomplete(Exception):
    """The server could not do what the scenario asked within its bounds (a result, not a bug)."""


@dataclass
class Context:
    """The run: options, the load generator, and which servers to measure."""

    options: argparse.Namespace
    loadgen: LoadGen
    servers: tuple[str, ...]

    @property
    def quick(self) -> bool:
        """``--quick``: small sizes."""
        return bool(self.options.quick)

    def log(self, message: str) -> None:
        """Progress on stderr (the tables go to stdout)."""
        if not self.options.silent:
            print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def drop_clients(self) -> None:
        """Drop every client, resetting the load generator if it does not answer."""
        try:
            self.loadgen.drop_clients()
        except LoadGenError:
            self.loadgen.reset()

    @contextlib.contextmanager
    def serving(self, kind: str, app: str = "fixture", openai_url: str | None = None, **options: Any) -> Iterator[Server]:
        """A fresh server for one measurement; the clients are dropped before it stops (a draining
        server would otherwise say goodbye to each of them).

        One connection is opened and dropped first, alone: Rails 6.1 starts its heartbeat timer
        on the first request with ``@heartbeat_timer ||=``, unguarded, and when the first
        connections arrive on several puma threads at once it may start two or three timers,
        which then ping every client two or three times per 3 s for the life of the process.
        """
        with start(kind, app, openai_url, **options) as server:
            try:
                require_all(self.loadgen.connect(server.port, ["first"], None, origin=ORIGIN))
                self.drop_clients()
                yield server
            finally:
                self.drop_clients()


class Window:
    """CPU of the server (and other processes) and of the load generator between ``start`` and ``stop``."""

    def __init__(self, server: Server, loadgen: LoadGen, others: Sequence[int] = ()) -> None:
        self.server, self.loadgen, self.others = server, loadgen, others
        self.start()

    def start(self) -> None:
        """(Re)start the window now."""
        self._server = self.server.cpu()
        self._loadgen = self.loadgen.cpu()
        self._others = [cpu_sample(pid) for pid in self.others]
        self._began = time.monotonic()

    def stop(self) -> None:
        """Close the window; the properties below describe it."""
        self.seconds = max(time.monotonic() - self._began, 1e-9)
        self.server_cpu = self.server.cpu() - self._server
        self.loadgen_cpu = [after - before for after, before in zip(self.loadgen.cpu(), self._loadgen, strict=False)]
        self.others_cpu = [cpu_sample(pid) - before for pid, before in zip(self.others, self._others, strict=True)]

    @property
    def loadgen_percent(self) -> float:
        """The busiest load-generator process, in % of one core."""
        return 100 * max(self.loadgen_cpu, default=0) / self.seconds

    def loadgen_cell(self) -> Cell:
        """:attr:`loadgen_percent` as a table cell."""
        return Cell(self.loadgen_percent)


def require_all(result: ConnectResult) -> None:
    """Raise :class:`Incomplete` unless every client of ``result`` got subscribed."""
    problem = result.problem()
    if problem:
        raise Incomplete(problem)


Measurement = Callable[[str], dict[Metric, Cell]]


def measure(
    ctx: Context, table: Table, group: str, metrics: Sequence[Metric], run: Measurement, kinds: Sequence[str] | None = None
) -> None:
    """``run(server_kind)`` for each server (of ``kinds`` only, if given), its cells filed under
    ``group``; failures become notes."""
    for kind in ctx.servers:
        if kinds is not None and kind not in kinds:
            continue
        ctx.log(f"{table.name} {group or ''} on {kind}")
        try:
            cells = run(kind)
        except (Incomplete, ServerFailed, LoadGenError, OSError) as exc:
            note = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            ctx.log(f"  {kind}: {note}")
            cells = {metric: Cell(None, f"{kind}: {note}") for metric in metrics}
        finally:
            ctx.drop_clients()
        for metric in metrics:
            table.put(group, metric, kind, cells.get(metric, Cell(None, f"{kind}: not measured")))
