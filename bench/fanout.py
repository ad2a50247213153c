"""Broadcast fan-out: one broadcast to N subscribers, in one process (memory) or spread over processes (Redis).

    .venv/bin/python -m bench.fanout [--clients 1000] [--broadcasts 20]

Each broadcast carries the ``time.monotonic_ns()`` at which the sender made it (and 200 bytes
of padding); every client notes when it decoded the frame. Per broadcast: delivery time p50/p99
over the clients, and the time until the last one had it. The sender is the admin hook of the
conformance fixture (``POST /__admin/broadcast``); server CPU comes from ``/proc``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

import httpx
import websockets

from cable_server.testing import RedisServer

from .llm_stream import cpu_seconds, free_port, pct, process

IDENTIFIER = json.dumps({"channel": "EchoChannel", "room": "bench"})


async def subscriber(url: str, ready: asyncio.Event, counter: list[int], total: int, arrivals: list[float]) -> None:
    async with websockets.connect(url, origin="http://localhost:3000", subprotocols=["actioncable-v1-json"]) as ws:  # type: ignore[list-item]
        await ws.recv()
        await ws.send(json.dumps({"command": "subscribe", "identifier": IDENTIFIER}))
        while "confirm_subscription" not in str(await ws.recv()):
            pass
        counter[0] += 1
        if counter[0] == total:
            ready.set()
        async for raw in ws:
            now = time.monotonic_ns()
            if '"sent"' in raw:
                arrivals.append((now - json.loads(raw)["message"]["sent"]) / 1e6)


async def scenario(name: str, ports: list[int], clients: int, broadcasts: int) -> dict[str, object]:
    ready, counter, arrivals = asyncio.Event(), [0], []
    tasks = [
        asyncio.ensure_future(
            subscriber(f"ws://127.0.0.1:{ports[i % len(ports)]}/cable?user=u{i}", ready, counter, clients, arrivals)
        )
        for i in range(clients)
    ]
    await asyncio.wait_for(ready.wait(), 120)
    pids = [int(p) for p in subprocess.check_output(["pgrep", "-f", "protocol_tests.fixture"]).split()]
    before = sum(cpu_seconds(pid) for pid in pids)
    p50s, p99s, alls = [], [], []
    async with httpx.AsyncClient() as http:
        for _ in range(broadcasts):
            arrivals.clear()
            body = {"sent": time.monotonic_ns(), "padding": "x" * 200}
            await http.post(f"http://127.0.0.1:{ports[0]}/__admin/broadcast", params={"stream": "echo_bench"}, json=body)
            deadline = time.monotonic() + 10
            while len(arrivals) < clients and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            p50s.append(statistics.median(arrivals))
            p99s.append(pct(arrivals, 0.99))
            alls.append(max(arrivals))
            await asyncio.sleep(0.05)
    cpu = sum(cpu_seconds(pid) for pid in pids) - before
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "scenario": name,
        "p50": statistics.median(p50s),
        "p99": statistics.median(p99s),
        "all": statistics.median(alls),
        "cpu_us": 1e6 * cpu / (clients * broadcasts),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--broadcasts", type=int, default=20)
    args = parser.parse_args()
    base = [sys.executable, "-m", "protocol_tests.fixture", "--log-level", "warning"]
    results = []
    port = free_port()
    with process([*base, "--port", str(port)], port):
        results.append(await scenario("1 process, memory", [port], args.clients, args.broadcasts))
    with RedisServer() as redis:
        ports = [free_port(), free_port()]
        shared = ["--pubsub", redis.url, "--channel-prefix", "bench"]
        with (
            process([*base, *shared, "--port", str(ports[0])], ports[0]),
            process([*base, *shared, "--port", str(ports[1])], ports[1]),
        ):
            results.append(await scenario("2 processes, Redis", ports, args.clients, args.broadcasts))
    print(
        f"{args.clients} subscribers, {args.broadcasts} broadcasts of ~230 bytes; median over broadcasts; {os.cpu_count()} cores"
    )
    print("| pub/sub | delivery p50 | delivery p99 | all received | server CPU per delivered message |")
    print("|---|---|---|---|---|")
    for r in results:
        print(f"| {r['scenario']} | {r['p50']:.1f} ms | {r['p99']:.1f} ms | {r['all']:.1f} ms | {r['cpu_us']:.0f} µs |")


if __name__ == "__main__":
    asyncio.run(main())
