"""Token streaming through GptChatChannel: added latency per chunk and chunks per second.

    .venv/bin/python -m bench.llm_stream [--quick]

Three processes on loopback: the fake OpenAI server (``--scripted``: each chunk's text is the
``time.monotonic_ns()`` at which it was written to the socket), ``cable-server`` (the demo app,
real ``openai`` SDK upstream), and this client. A chunk's latency is the time from the fake
writing it to this client having decoded its frame: everything the server adds (SDK parsing,
encoding, broadcast, the WebSocket write) plus one loopback hop each way. CPU is read from
``/proc/<pid>/stat`` for the server, the fake and this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@contextmanager
def process(args: list[str], port: int, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{args[0]} did not start") from None
                time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(10)


@dataclass
class Result:
    name: str
    chunks: int
    seconds: float
    latencies_ms: list[float]
    first_ms: list[float]
    cpu: dict[str, float]


class Chat:
    """One user of the demo chat: its own connection and room."""

    def __init__(self, url: str, name: str) -> None:
        self.url, self.name = url, name
        self.origin = "http://" + url.split("/")[2]
        self.identifier = json.dumps({"channel": "GptChatChannel", "room": name})

    async def __aenter__(self) -> Chat:
        self.ws = await websockets.connect(
            f"{self.url}?name={self.name}",
            subprotocols=["actioncable-v1-json"],
            origin=self.origin,  # type: ignore[arg-type]
            max_size=None,  # type: ignore[list-item]
        )
        await self.ws.recv()  # welcome
        await self.ws.send(json.dumps({"command": "subscribe", "identifier": self.identifier}))
        while "confirm_subscription" not in str(await self.ws.recv()):
            pass
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()

    async def ask(self, chunks: int, rate: float) -> tuple[list[float], float | None]:
        """One answer; per-chunk latencies (ms) and the first chunk's."""
        prompt = json.dumps({"chunks": chunks, "rate": rate})
        data = json.dumps({"action": "send_message", "user_content": prompt})
        await self.ws.send(json.dumps({"command": "message", "identifier": self.identifier, "data": data}))
        latencies: list[float] = []
        while True:
            raw = await self.ws.recv()
            now = time.monotonic_ns()
            frame = json.loads(raw)
            message = frame.get("message")
            if not isinstance(message, dict):
                continue
            event = message.get("event")
            if event == "delta":
                latencies.append((now - int(message["content"])) / 1e6)
            elif event in ("done", "error", "stopped"):
                if event != "done":
                    raise RuntimeError(f"generation ended with {message}")
                return latencies, latencies[0] if latencies else None


async def scenario(name: str, url: str, pids: dict[str, int], users: int, answers: int, chunks: int, rate: float) -> Result:
    before = {who: cpu_seconds(pid) for who, pid in pids.items()}
    latencies: list[float] = []
    first: list[float] = []

    async def user(index: int) -> None:
        async with Chat(url, f"bench{index}") as chat:
            for _ in range(answers):
                chunk_latencies, first_latency = await chat.ask(chunks, rate)
                latencies.extend(chunk_latencies)
                if first_latency is not None:
                    first.append(first_latency)

    started = time.monotonic()
    await asyncio.gather(*(user(i) for i in range(users)))
    seconds = time.monotonic() - started
    cpu = {who: cpu_seconds(pid) - before[who] for who, pid in pids.items()}
    return Result(name, len(latencies), seconds, latencies, first, cpu)


def table(results: list[Result]) -> str:
    head = (
        "| scenario | chunks | chunks/s | latency p50 | latency p99 | first chunk p50 | first chunk p99 "
        "| server CPU | server CPU/chunk | fake CPU | client CPU |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in results:
        lines.append(
            f"| {r.name} | {r.chunks} | {r.chunks / r.seconds:,.0f} | {statistics.median(r.latencies_ms):.2f} ms | "
            f"{pct(r.latencies_ms, 0.99):.2f} ms | {statistics.median(r.first_ms):.2f} ms | {pct(r.first_ms, 0.99):.2f} ms | "
            f"{100 * r.cpu['server'] / r.seconds:.0f}% | {1e6 * r.cpu['server'] / r.chunks:.0f} µs | "
            f"{100 * r.cpu['fake'] / r.seconds:.0f}% | {100 * r.cpu['client'] / r.seconds:.0f}% |"
        )
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts (a smoke run)")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    fake_port, server_port = free_port(), free_port()
    env = {
        "OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1",
        "OPENAI_API_KEY": "sk-bench",
        "CABLE_LLM_MAX_CONCURRENT": "1000",
        "CABLE_LLM_HISTORY_MESSAGES": "0",
    }
    fake_cmd = [sys.executable, "-m", "cable_server.testing", "--scripted", "--port", str(fake_port)]
    server_cmd = [str(BIN / "cable-server"), "--port", str(server_port), "--log-level", "warning"]
    with process(fake_cmd, fake_port) as fake, process(server_cmd, server_port, env) as server:
        pids = {"server": server.pid, "fake": fake.pid, "client": os.getpid()}
        url = f"ws://127.0.0.1:{server_port}/cable"
        await scenario("warm-up", url, pids, 4, 2, 20, 0)
        results = [
            await scenario("1 chat, 20 chunks, one after another", url, pids, 1, max(5, int(100 * scale)), 20, 0),
            await scenario("1 subscriber, flat out", url, pids, 1, 1, int(20_000 * scale), 0),
            await scenario("20 chats at 20 tokens/s", url, pids, 20, 1, max(10, int(100 * scale)), 20),
            await scenario("100 chats at 20 tokens/s", url, pids, 100, 1, max(10, int(100 * scale)), 20),
        ]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; latency = fake wrote the chunk -> client decoded its frame")
    print(table(results))


if __name__ == "__main__":
    asyncio.run(main())
