"""Delivery under repeated socket drops: what a plain client sees versus a client that resumes.

    .venv/bin/python -m bench.resume [--chats 20] [--drop-every 2] [--offline 0.5]

Each chat asks for a long answer (500 chunks at 50 tokens/s, 10 s from the fake OpenAI server); every
``--drop-every`` seconds its socket is killed (no close frame) and it stays away ``--offline``
seconds before reconnecting. "Plain" counts the chunks a Rails-style client gets live
(``text += data.content``); "with resume" counts what the client holds after calling ``resume``
on each reconnect.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from protocol_tests.client import CableClient, ident

from .common import free_port, process
from .servers import UNBUDGETED

CHUNKS = 500


async def chat(url: str, user: str, drop_every: float, offline: float) -> tuple[int, int, int]:
    """(chunks received live, chunks held after resumes, drops) for one answer."""
    identifier = ident("GptChatChannel", room=user)
    frames: dict[int, dict[str, object]] = {}
    live = drops = 0
    message_id = None
    origin = url.replace("ws", "http", 1).rsplit("/", 1)[0]
    client = await CableClient.connect(f"{url}?name={user}", origin=origin)
    # The demo's guest cookie, sent back on every reconnect as a browser does: the same guest, the same room.
    guest = {"Cookie": client.ws.response.headers["set-cookie"].split(";", 1)[0]} if client.ws.response else {}
    await client.subscribe(identifier)
    await client.perform(identifier, "send_message", user_content=f'{{"chunks": {CHUNKS}, "rate": 50}}')
    while True:
        connected = time.monotonic()
        while time.monotonic() - connected < drop_every:
            try:
                message = (await client.recv(drop_every))["message"]
            except TimeoutError:
                break
            message_id = message.get("message_id", message_id)
            if message.get("event") == "delta" and not message.get("replay"):
                live += 1
            frames.setdefault(int(message["seq"]), message)
            done = [f for f in frames.values() if f["event"] in ("done", "error", "stopped")]
            if done and len(frames) == int(done[0]["seq"]) + 1:
                await client.close()
                return live, sum(f["event"] == "delta" for f in frames.values()), drops
        client.ws.transport.abort()
        drops += 1
        await asyncio.sleep(offline)
        client = await CableClient.connect(f"{url}?name={user}", origin=origin, headers=guest)
        await client.subscribe(identifier)
        after = max((s for s in frames if all(k in frames for k in range(s))), default=-1)
        await client.perform(identifier, "resume", message_id=message_id, after_seq=after)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=20)
    parser.add_argument("--drop-every", type=float, default=2.0)
    parser.add_argument("--offline", type=float, default=0.5)
    args = parser.parse_args()
    fake_port, port = free_port(), free_port()
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{fake_port}/v1", "OPENAI_API_KEY": "sk-bench", "CABLE_LLM_HISTORY_MESSAGES": "0"}
    env.update(UNBUDGETED)
    with (
        process([sys.executable, "-m", "cable_server.testing", "--scripted", "--port", str(fake_port)], fake_port),
        process([sys.executable, "-m", "cable_server", "--port", str(port), "--log-level", "warning"], port, env),
    ):
        url = f"ws://127.0.0.1:{port}/cable"
        results = await asyncio.gather(*(chat(url, f"mobile{n}", args.drop_every, args.offline) for n in range(args.chats)))
    total = CHUNKS * args.chats
    live = sum(r[0] for r in results)
    held = sum(r[1] for r in results)
    drops = sum(r[2] for r in results)
    every = f"socket killed every {args.drop_every} s, {args.offline} s offline each time"
    print(f"{args.chats} answers of {CHUNKS} chunks at 50/s; {every}; {drops} drops")
    print("| client | chunks delivered | lost |")
    print("|---|---|---|")
    print(
        f"| plain (Rails-style, live only) | {live}/{total} ({100 * live / total:.1f}%) | {100 * (total - live) / total:.1f}% |"
    )
    print(f"| with resume | {held}/{total} ({100 * held / total:.1f}%) | {100 * (total - held) / total:.1f}% |")
    print(f"({os.cpu_count()} cores)")


if __name__ == "__main__":
    asyncio.run(main())
