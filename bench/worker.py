"""One load-generator process: it holds clients and notes what they receive, on commands from the parent.

The parent (:mod:`bench.loadgen`) sends ``(seq, command, kwargs)`` over a pipe; each command runs
as a task here and is answered with ``("reply", seq, ok, result)``. Unprompted news (every client
of this process got broadcast ``i``) goes up as ``("event", name, value)`` so the parent can pace
broadcasts without polling. Results travel as ``array("q")`` bytes of nanoseconds; percentiles
are computed by the parent over every process's samples.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from array import array
from multiprocessing.connection import Connection
from typing import Any

import orjson

from .common import raise_nofile
from .wsclient import IGNORE, CableClient, ConnectFailed, open_client

__all__ = ["main"]

END_EVENTS = ("done", "error", "stopped")


class FanoutRecorder:
    """Broadcasts carrying ``{"i": index, "sent": monotonic_ns}``: per index, each client's delay."""

    def __init__(self, expected: int, worker: Worker) -> None:
        self.expected, self.worker = expected, worker
        self.delays: dict[int, array[int]] = {}

    def on_message(self, client: CableClient, message: Any, now_ns: int) -> None:
        """Note the delay; tell the parent when this process's last client got broadcast ``i``."""
        index = message.get("i") if isinstance(message, dict) else None
        if index is None:
            return
        delays = self.delays.get(index)
        if delays is None:
            delays = self.delays[index] = array("q")
        delays.append(now_ns - message["sent"])
        if len(delays) == self.expected:
            self.worker.event("all", index)


class ChatRecorder:
    """Answers of GptChatChannel (ours: ``event: "delta"``; Rails: bare ``{content}``), whose content
    is the fake model's ``"<monotonic_ns> "`` stamp: per chunk, the delay since the fake wrote it."""

    def __init__(self, clients: list[CableClient]) -> None:
        self.latencies = array("q")
        self.first = array("q")
        self.first_added = array("q")  # the first chunk: the fake wrote it -> decoded
        self.ends: collections.Counter[str] = collections.Counter()
        self.pending = len(clients)
        self.last = 0
        self.finished = asyncio.get_running_loop().create_future()
        if not clients:
            self.finished.set_result(None)

    def on_message(self, client: CableClient, message: Any, now_ns: int) -> None:
        """A content chunk: its latency (and the chat's first); an end event: one answer less to wait for."""
        if not isinstance(message, dict):
            return
        event, content = message.get("event"), message.get("content")
        sent_at, first = client.slot
        if content and event in (None, "delta"):
            self.latencies.append(now_ns - int(content))
            self.last = now_ns
            if first is None:
                client.slot = (sent_at, now_ns)
                self.first.append(now_ns - sent_at)
                self.first_added.append(now_ns - int(content))
        elif event in END_EVENTS and first is not False:
            client.slot = (sent_at, False)  # ended: later frames of this client are not counted again
            self.ends[event] += 1
            self.pending -= 1
            if self.pending == 0 and not self.finished.done():
                self.finished.set_result(None)


class BurstRecorder:
    """EchoChannel ``burst``: ``{"seq": i}`` for i in 1..n; when the last arrives."""

    def __init__(self, count: int) -> None:
        self.count, self.received, self.last = count, 0, 0
        self.finished = asyncio.get_running_loop().create_future()

    def on_message(self, client: CableClient, message: Any, now_ns: int) -> None:
        """Count ``{"seq": i}``; done at ``seq == count``."""
        if isinstance(message, dict) and "seq" in message:
            self.received += 1
            self.last = now_ns
            if message["seq"] == self.count and not self.finished.done():
                self.finished.set_result(None)


class Worker:
    """The clients of this process and the commands the parent can run on them."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.clients: list[CableClient] = []
        self.tasks: set[asyncio.Task[None]] = set()

    # --- plumbing --------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run commands until the parent says ``exit`` or goes away."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[tuple[int, str, dict[str, Any]]] = asyncio.Queue()

        def read_commands() -> None:
            # A thread blocked in recv(): the loop's add_reader would make the pipe non-blocking
            # (uvloop does), and a large command would then be read in part.
            while True:
                try:
                    command = self.conn.recv()
                except (EOFError, OSError):
                    command = (0, "exit", {})
                loop.call_soon_threadsafe(inbox.put_nowait, command)
                if command[1] == "exit":
                    return

        threading.Thread(target=read_commands, name="commands", daemon=True).start()
        while True:
            seq, name, kwargs = await inbox.get()
            if name == "exit":
                break
            if name == "reset":  # the parent gave up on a command: stop everything, drop every client
                for task in self.tasks:
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
                self.cmd_close()
            task = asyncio.create_task(self._run(seq, name, kwargs))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        self.cmd_close()

    async def _run(self, seq: int, name: str, kwargs: dict[str, Any]) -> None:
        try:
            result = getattr(self, f"cmd_{name}")(**kwargs)
            if asyncio.iscoroutine(result):
                result = await result
        except asyncio.CancelledError:
            self.conn.send(("reply", seq, False, "cancelled"))
            raise
        except Exception as exc:
            self.conn.send(("reply", seq, False, f"{type(exc).__name__}: {exc}"))
        else:
            self.conn.send(("reply", seq, True, result))

    def event(self, name: str, value: Any) -> None:
        """Tell the parent something it did not ask for (yet)."""
        self.conn.send(("event", name, value))

    def _handle_with(self, handler: Any) -> None:
        for client in self.clients:
            client.handler = handler

    # --- commands --------------------------------------------------------------------------------

    def cmd_reset(self) -> None:
        """Done in :meth:`serve`; answered here."""

    async def cmd_connect(
        self,
        host: str,
        port: int,
        targets: list[str],
        identifiers: list[str | None],
        origin: str,
        concurrency: int,
        sources: list[str],
        timeout: float,
    ) -> dict[str, Any]:
        """Open a client per target (``/cable?user=...``), ``concurrency`` at a time, each subscribed
        to its identifier. Failures are counted, not raised; the whole batch is bounded by ``timeout``."""
        gate = asyncio.Semaphore(concurrency)
        durations = array("q")
        errors: collections.Counter[str] = collections.Counter()
        last = started = time.monotonic_ns()

        async def one(index: int) -> None:
            nonlocal last
            async with gate:
                begun = time.monotonic_ns()
                try:
                    client = await open_client(
                        host,
                        port,
                        targets[index],
                        origin=origin,
                        identifier=identifiers[index],
                        source=sources[index % len(sources)] if sources else None,
                    )
                except (ConnectFailed, OSError) as exc:
                    errors[str(exc)[:100]] += 1
                    return
                last = time.monotonic_ns()
                durations.append(last - begun)
                self.clients.append(client)

        timed_out = False
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(one(index) for index in range(len(targets))))
        except TimeoutError:
            timed_out = True
        return {
            "ok": len(durations),
            "failed": len(targets) - len(durations),
            "errors": dict(errors.most_common(3)),
            "timed_out": timed_out,
            "started": started,
            "last": last,
            "durations": durations.tobytes(),
        }

    def cmd_stats(self) -> dict[str, int]:
        """Clients held and open, and pings they received so far (proof that they keep reading)."""
        return {
            "clients": len(self.clients),
            "open": sum(not client.closed for client in self.clients),
            "pings": sum(client.pings for client in self.clients),
        }

    def cmd_fanout_arm(self) -> int:
        """Record broadcasts from now on; an ``all`` event per index once every open client has it."""
        self.fanout = FanoutRecorder(sum(not client.closed for client in self.clients), self)
        self._handle_with(self.fanout)
        return self.fanout.expected

    def cmd_fanout_collect(self) -> dict[int, bytes]:
        """Per broadcast index, the delays seen (ns), and stop recording."""
        self._handle_with(IGNORE)
        return {index: delays.tobytes() for index, delays in self.fanout.delays.items()}

    async def cmd_chat(self, prompt: str, timeout: float) -> dict[str, Any]:
        """Every client asks GptChatChannel ``send_message`` at once and reads its answer to the end."""
        recorder = ChatRecorder(self.clients)
        started = time.monotonic_ns()
        for client in self.clients:
            client.handler = recorder
            client.slot = (time.monotonic_ns(), None)
            client.perform("send_message", user_content=prompt, user_id=_room_of(client))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(recorder.finished), timeout)
        self._handle_with(IGNORE)
        return {
            "latencies": recorder.latencies.tobytes(),
            "first": recorder.first.tobytes(),
            "first_added": recorder.first_added.tobytes(),
            "ends": dict(recorder.ends),
            "chats": len(self.clients),
            "started": started,
            "last": recorder.last,
        }

    async def cmd_burst(self, count: int, timeout: float) -> dict[str, int]:
        """The first client performs EchoChannel ``burst`` of ``count``; its messages are counted."""
        if not self.clients:  # the client is in another worker process
            return {"received": 0, "started": 0, "last": 0}
        recorder = BurstRecorder(count)
        client = self.clients[0]
        client.handler = recorder
        started = time.monotonic_ns()
        client.perform("burst", n=count)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(recorder.finished), timeout)
        client.handler = IGNORE
        return {"received": recorder.received, "started": started, "last": recorder.last}

    def cmd_close(self) -> None:
        """Drop every client (RST)."""
        for client in self.clients:
            client.abort()
        self.clients.clear()


def _room_of(client: CableClient) -> str:
    """The ``room`` of the client's identifier (the chat's ``user_id``)."""
    return str(orjson.loads(client.identifier or "{}").get("room", ""))


def main(conn: Connection, use_uvloop: bool) -> None:
    """The process's entry point (``multiprocessing`` target)."""
    raise_nofile()
    worker = Worker(conn)
    if use_uvloop:
        import uvloop

        uvloop.run(worker.serve())
    else:
        asyncio.run(worker.serve())
