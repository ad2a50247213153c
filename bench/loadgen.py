"""The load generator as the benchmark sees it: worker processes holding the clients, driven over pipes.

The clients live in separate processes (:mod:`bench.worker`) so that the parent stays free to
send broadcasts and read ``/proc``, and so that their CPU can be read apart from everything
else: :meth:`LoadGen.cpu` is what the tables print next to each result, to show that the
load generator was not the bottleneck. One process is the default on a 2-core machine (the
server takes the other core); ``--loadgen-procs`` spreads clients over more.

Every call is bounded: a worker that does not answer in time is reset (its clients dropped),
and one that does not answer the reset is replaced.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import multiprocessing
import time
from array import array
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from . import worker
from .common import CpuSample, cpu_sample

__all__ = ["ConnectResult", "LoadGen", "LoadGenError", "sources_for"]

#: Clients per source address beyond which more addresses (127.0.0.2, .3...) are used.
CLIENTS_PER_SOURCE = 4_000


class LoadGenError(RuntimeError):
    """A worker failed a command or did not answer in time."""


def sources_for(count: int) -> list[str]:
    """Local addresses to spread ``count`` clients over: none (the kernel's choice) for small counts."""
    if count <= CLIENTS_PER_SOURCE:
        return []
    return [f"127.0.0.{2 + k}" for k in range(math.ceil(count / CLIENTS_PER_SOURCE))]


class ConnectResult:
    """What a batch of connections gave, over every worker."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.ok = sum(r["ok"] for r in replies)
        self.failed = sum(r["failed"] for r in replies)
        self.timed_out = any(r["timed_out"] for r in replies)
        self.errors: dict[str, int] = {}
        for reply in replies:
            for error, count in reply["errors"].items():
                self.errors[error] = self.errors.get(error, 0) + count
        self.seconds = (max(r["last"] for r in replies) - min(r["started"] for r in replies)) / 1e9
        self.durations_ms = [ns / 1e6 for r in replies for ns in array("q", r["durations"])]

    def problem(self) -> str | None:
        """``None`` when every client got subscribed, else what went wrong."""
        if not self.failed:
            return None
        first = next(iter(self.errors), "timeout")
        return f"{self.ok:,}/{self.ok + self.failed:,} subscribed{' (timed out)' if self.timed_out else ''}; {first}"


class LoadGen:
    """``processes`` worker processes, started at once and reused by every scenario."""

    def __init__(self, processes: int = 1, use_uvloop: bool | None = None) -> None:
        if use_uvloop is None:
            use_uvloop = importlib.util.find_spec("uvloop") is not None
        self.processes, self.use_uvloop = processes, use_uvloop
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[tuple[BaseProcess, Connection]] = [self._spawn() for _ in range(processes)]
        self._seq = 0
        self._events: list[tuple[str, Any]] = []

    @property
    def loop_name(self) -> str:
        """The event loop the workers run."""
        return "uvloop" if self.use_uvloop else "asyncio"

    def _spawn(self) -> tuple[BaseProcess, Connection]:
        parent, child = self._context.Pipe()
        proc = self._context.Process(target=worker.main, args=(child, self.use_uvloop), daemon=True)
        proc.start()
        child.close()
        return proc, parent

    def pids(self) -> list[int]:
        """The worker processes."""
        return [proc.pid for proc, _ in self._workers if proc.pid is not None]

    def cpu(self) -> list[CpuSample]:
        """CPU used so far by each worker."""
        return [cpu_sample(pid) for pid in self.pids()]

    # --- calls -----------------------------------------------------------------------------------

    def call(self, name: str, kwargs: list[dict[str, Any]] | dict[str, Any] | None = None, timeout: float = 30) -> list[Any]:
        """Run command ``name`` on every worker (``kwargs`` per worker, or the same for all); their results.

        Raises :class:`LoadGenError` when one fails or does not answer within ``timeout``
        (the workers are then reset).
        """
        per_worker = kwargs if isinstance(kwargs, list) else [kwargs or {}] * len(self._workers)
        self._seq += 1
        seq = self._seq
        for (proc, conn), arguments in zip(self._workers, per_worker, strict=True):
            try:
                conn.send((seq, name, arguments))
            except OSError:
                proc.join(1)
                raise LoadGenError(f"load generator: a worker process died (exit code {proc.exitcode})") from None
        replies: dict[int, tuple[bool, Any]] = {}
        deadline = time.monotonic() + timeout
        while len(replies) < len(self._workers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.reset()
                raise LoadGenError(f"load generator: {name} not answered in {timeout:.0f} s")
            self._pump(remaining, seq, replies)
        failures = [result for ok, result in replies.values() if not ok]
        if failures:
            raise LoadGenError(f"load generator: {name}: {failures[0]}")
        return [replies[index][1] for index in range(len(self._workers))]

    def _pump(self, timeout: float, seq: int, replies: dict[int, tuple[bool, Any]]) -> None:
        """Read what the workers sent within ``timeout``: replies to ``seq`` into ``replies``, events aside."""
        by_conn = {id(conn): index for index, (_, conn) in enumerate(self._workers)}
        for conn in wait([conn for _, conn in self._workers], timeout):
            assert isinstance(conn, Connection)
            try:
                message = conn.recv()
            except EOFError:
                proc = self._workers[by_conn[id(conn)]][0]
                proc.join(1)
                raise LoadGenError(f"load generator: a worker process died (exit code {proc.exitcode})") from None
            if message[0] == "event":
                self._events.append((message[1], message[2]))
            elif message[1] == seq:
                replies[by_conn[id(conn)]] = (message[2], message[3])

    def wait_event(self, name: str, value: Any, timeout: float) -> bool:
        """Wait until every worker reported event ``(name, value)``; False on timeout."""
        deadline = time.monotonic() + timeout
        while sum(event == (name, value) for event in self._events) < len(self._workers):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._pump(remaining, -1, {})
        self._events = [event for event in self._events if event != (name, value)]
        return True

    def reset(self) -> None:
        """Cancel whatever the workers run and drop their clients; replace a worker that does not answer."""
        self._events.clear()
        self._seq += 1
        for _, conn in self._workers:
            conn.send((self._seq, "reset", {}))
        replies: dict[int, tuple[bool, Any]] = {}
        deadline = time.monotonic() + 30
        while len(replies) < len(self._workers) and time.monotonic() < deadline:
            self._pump(deadline - time.monotonic(), self._seq, replies)
        for index, (proc, conn) in enumerate(self._workers):
            if index not in replies:
                proc.kill()
                conn.close()
                self._workers[index] = self._spawn()

    def close(self) -> None:
        """Stop the workers."""
        for proc, conn in self._workers:
            with contextlib.suppress(OSError):
                conn.send((0, "exit", {}))
            proc.join(5)
            if proc.is_alive():
                proc.kill()

    # --- clients ---------------------------------------------------------------------------------

    def connect(
        self,
        port: int,
        users: list[str],
        identifier: str | list[str | None] | None,
        *,
        origin: str,
        concurrency: int = 200,
        timeout: float | None = None,
    ) -> ConnectResult:
        """Connect one client per user to ``ws://127.0.0.1:port/cable?user=<user>&name=<user>`` (the
        fixtures read ``user``, our chat demo ``name``) and subscribe it.

        ``concurrency`` connections are in flight at once over all workers; clients are split
        between workers round-robin. Failures are reported in the result, not raised. The batch
        is bounded by ``timeout`` (default: 30 s + 10 ms per client).
        """
        timeout = timeout or 30 + len(users) / 100
        identifiers = identifier if isinstance(identifier, list) else [identifier] * len(users)
        sources = sources_for(len(users))
        count = len(self._workers)
        per_worker = [
            {
                "host": "127.0.0.1",
                "port": port,
                "targets": [f"/cable?user={user}&name={user}" for user in users[index::count]],
                "identifiers": identifiers[index::count],
                "origin": origin,
                "concurrency": max(1, concurrency // count),
                "sources": sources,
                "timeout": timeout,
            }
            for index in range(count)
        ]
        return ConnectResult(self.call("connect", per_worker, timeout + 30))

    def stats(self) -> dict[str, int]:
        """Clients held, still open, and pings received, summed over the workers."""
        totals: dict[str, int] = {}
        for reply in self.call("stats"):
            for key, value in reply.items():
                totals[key] = totals.get(key, 0) + value
        return totals

    def drop_clients(self) -> None:
        """Abort every client (RST), so the next server starts with no leftovers."""
        self.call("close")
