"""``python -m bench.abuse``: each abuse by volume of issue 26, the attack and a bystander's experience,
with the limit that answers it off and on.

    .venv/bin/python -m bench.abuse            # every row (~3 minutes)
    .venv/bin/python -m bench.abuse --quick    # smaller attacks, under a minute (the CI smoke test)
    .venv/bin/python -m bench.abuse --only 1,4

Every row starts a fresh ``cable-server`` (the demo app, as shipped) in its own process, with the
OpenAI API played by :class:`~cable_server.testing.FakeOpenAI` in this process, which counts what
reaches it. The attacker connects from 127.0.0.2 and the bystander from 127.0.0.3, so per-address
limits see two clients. "limit off" runs the same attack with that limit's settings at 0 (or past
the attack), which is what the server did before the limit existed; a row whose fix cannot be
switched off (a parser bound, a file rule) shows the fix only. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from cable_server.testing import FakeOpenAI, Reply

from .common import BIN, ROOT, free_port, process, rss_bytes
from .servers import ORIGIN, redis

__all__ = ["main"]

ATTACKER, BYSTANDER = "127.0.0.2", "127.0.0.3"
ECHO = json.dumps({"channel": "EchoChannel"})
#: The limits of each row switched off (set past the attack): what the server did before them.
OFF: dict[str, dict[str, str]] = {
    "frames": {"CABLE_FRAME_RATE": "0"},
    "incomplete": {"CABLE_INCOMPLETE_TIMEOUT": "0", "CABLE_MAX_INCOMPLETE_BYTES_PER_ADDRESS": "0"},
    "budget": {
        f"CABLE_LLM_{measure}_PER_MINUTE{per}": "0"
        for measure in ("REQUESTS", "TOKENS")
        for per in ("", "_PER_USER", "_PER_ADDRESS")
    },
    "share": {"CABLE_LLM_MAX_CONCURRENT_PER_ADDRESS": "0", "CABLE_LLM_MAX_QUEUED_PER_ADDRESS": "0"},
    "redis": {"CABLE_LLM_HISTORY_MAX_BYTES": "0", "CABLE_LLM_HISTORY_ROOM_BYTES": "0"},
    "visits": {"CABLE_LLM_ROOM_VISITS_PER_MINUTE_PER_CONNECTION": "0", "CABLE_LLM_ROOM_VISITS_PER_MINUTE_PER_ADDRESS": "0"},
    "system": {"CABLE_LLM_MAX_SYSTEM_PROMPT_CHARS": "2000000"},
}


@dataclass
class Row:
    """One line of the table."""

    number: str
    attack: str
    off: str
    on: str


@contextlib.contextmanager
def server(env: dict[str, str], *args: str) -> Iterator[tuple[int, int]]:
    """``cable-server`` (the demo) with ``env``: its port and pid."""
    port = free_port()
    command = [str(BIN / "cable-server"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "error"]
    with process([*command, "--allowed-origins", ORIGIN, *args], port, {"OPENAI_API_KEY": "sk-abuse", **env}) as proc:
        yield port, proc.pid


async def connect(port: int, source: str, query: str = "") -> ClientConnection:
    """An ActionCable connection from ``source``, past its welcome."""
    ws = await websockets.connect(
        f"ws://127.0.0.1:{port}/cable{query}",
        origin=ORIGIN,  # type: ignore[arg-type]
        subprotocols=["actioncable-v1-json"],  # type: ignore[list-item]
        local_addr=(source, 0),
        max_size=None,
        open_timeout=10,
        close_timeout=1,
        ping_interval=None,
    )
    await recv(ws)
    return ws


async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    """The next frame that is not a ping."""
    async with asyncio.timeout(timeout):
        while True:
            frame: dict[str, Any] = json.loads(await ws.recv())
            if frame.get("type") != "ping":
                return frame


async def subscribe(ws: ClientConnection, identifier: str, timeout: float = 10.0) -> bool:
    """Whether the subscription was confirmed."""
    await ws.send(json.dumps({"command": "subscribe", "identifier": identifier}))
    while True:
        frame = await recv(ws, timeout)
        if frame.get("identifier") == identifier and frame.get("type") in ("confirm_subscription", "reject_subscription"):
            return bool(frame["type"] == "confirm_subscription")


async def perform(ws: ClientConnection, identifier: str, action: str, **data: Any) -> None:
    await ws.send(json.dumps({"command": "message", "identifier": identifier, "data": json.dumps({"action": action, **data})}))


def room(value: Any) -> str:
    return json.dumps({"channel": "GptChatChannel", "room": value})


async def echo_times(ws: ClientConnection, until: Callable[[], bool]) -> list[float]:
    """The bystander: an echo every 50 ms until ``until()``; each round trip in ms (10 s if none came)."""
    times: list[float] = []
    while not until() or not times:
        sent = time.perf_counter()
        await perform(ws, ECHO, "echo")
        try:
            await recv(ws)
            times.append((time.perf_counter() - sent) * 1000)
        except TimeoutError:
            times.append(10_000.0)
        await asyncio.sleep(0.05)
    await ws.close()
    return times


def _handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), source_address=(ATTACKER, 0))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /cable HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: {ORIGIN}\r\n"
        "Sec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    return sock


def _flood_pings(port: int, seconds: float, closed: Any) -> None:
    """In a process of its own: masked empty pings as fast as the socket takes them, the pongs read."""
    sock = _handshake(port)
    sock.setblocking(False)
    batch = b"\x89\x80\x00\x00\x00\x00" * 1000
    started = time.monotonic()
    end = started + seconds
    try:
        while time.monotonic() < end:
            with contextlib.suppress(BlockingIOError):
                sock.send(batch)
            with contextlib.suppress(BlockingIOError):
                while True:
                    if sock.recv(1 << 20) == b"":
                        raise ConnectionError("closed by the server")
    except OSError:
        closed.value = time.monotonic() - started
    sock.close()


async def frames(seconds: float, off: bool) -> str:
    with server(OFF["frames"] if off else {}) as (port, _):
        bystander = await connect(port, BYSTANDER)
        await subscribe(bystander, ECHO)
        closed = multiprocessing.Value("d", 0.0)
        flooder = multiprocessing.Process(target=_flood_pings, args=(port, seconds, closed))
        flooder.start()
        times = await echo_times(bystander, lambda: not flooder.is_alive())
        flooder.join()
    state = f"cut off after {closed.value * 1000:,.0f} ms" if closed.value else "never cut off"
    return f"bystander echo p50 {statistics.median(times):,.0f} ms, max {max(times):,.0f} ms; flooder {state}"


async def incomplete(sockets: int, off: bool) -> str:
    """``sockets`` sockets each send 1,000,000 bytes of a 1,048,000-byte frame, then stall."""
    header = b"\x81\xff" + (1_048_000).to_bytes(8, "big") + b"\x00\x00\x00\x00"
    payload = header + b"a" * 1_000_000
    with server(OFF["incomplete"] if off else {}) as (port, pid):
        before = rss_bytes(pid)
        held = [await asyncio.to_thread(_handshake, port) for _ in range(sockets)]
        for sock in held:
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError, OSError):
                sock.send(payload)
        await asyncio.sleep(3)
        grown = (rss_bytes(pid) - before) / 2**20
        open_ = sum(_still_open(sock) for sock in held)
        for sock in held:
            sock.close()
    return f"server RSS +{grown:,.0f} MiB; {open_} of {sockets} still open after 3 s"


def _still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed ``sock`` (what it sent before is read and dropped)."""
    try:
        while sock.recv(1 << 16):
            pass
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False


async def loop_questions(port: int, seconds: float, question: str, *, new_rooms: bool) -> None:
    """10 anonymous attackers loop ``send_message`` and ``stop``, in one room each or a new room each time."""

    async def attacker(n: int) -> None:
        end = time.monotonic() + seconds
        turn = 0
        while time.monotonic() < end:  # closed for flooding commands: connects again, as a bot would
            ws = await connect(port, ATTACKER)
            with contextlib.suppress(websockets.ConnectionClosed):
                turn = await questions(ws, n, turn, end)
            await ws.close()

    async def questions(ws: ClientConnection, n: int, turn: int, end: float) -> int:
        joined = None
        while time.monotonic() < end:
            name = f"{n}-{turn}" if new_rooms else n
            turn += 1
            if name != joined:
                if joined is not None:
                    await ws.send(json.dumps({"command": "unsubscribe", "identifier": room(joined)}))
                try:  # past the command rate, commands are dropped
                    joined = name if await subscribe(ws, room(name), 1) else None
                except TimeoutError:
                    joined = None
                if joined is None:
                    await asyncio.sleep(0.05)
                    continue
            await perform(ws, room(name), "send_message", user_content=question, user_id=name)
            with contextlib.suppress(TimeoutError):  # past the command rate, commands are dropped
                if (await recv(ws, 1)).get("message", {}).get("event") == "error":
                    await asyncio.sleep(0.05)
                    continue
                while (await recv(ws, 1)).get("message", {}).get("event") not in ("delta", "stopped", "done", "error"):
                    pass  # stopped once upstream answers: the request was made
                await perform(ws, room(name), "stop")
                while (await recv(ws, 1)).get("message", {}).get("event") not in ("stopped", "done", "error"):
                    pass
        return turn

    await asyncio.gather(*(attacker(n) for n in range(10)))


async def budget(fake: FakeOpenAI, seconds: float, off: bool) -> str:
    fake.requests.clear()
    with server({"OPENAI_BASE_URL": fake.url, **(OFF["budget"] if off else {})}) as (port, _):
        await loop_questions(port, seconds, "q" * 32_000, new_rooms=False)
        sent = len(fake.requests)
        answered = await bystander_answer(port)
    tokens = sum(len(json.dumps(request.messages)) for request in fake.requests) // 4
    return f"{sent:,} upstream requests (~{tokens / 1e6:.1f} M input tokens); bystander {answered}"


async def bystander_answer(port: int) -> str:
    """The bystander asks one question: how long until its first word, or why it got none."""
    ws = await connect(port, BYSTANDER)
    await subscribe(ws, room("bystander"))
    started = time.perf_counter()
    await perform(ws, room("bystander"), "send_message", user_content="hello", user_id="bystander")
    while True:
        frame = (await recv(ws, 60)).get("message", {})
        if frame.get("event") == "delta":
            return f"first word in {(time.perf_counter() - started) * 1000:,.0f} ms"
        if frame.get("event") == "error":
            return f"refused: {frame['error']['category']}"


async def share(fake: FakeOpenAI, sockets: int, off: bool) -> str:
    """``sockets`` attackers each ask slow answers in two rooms; then the bystander asks."""
    fake.default = Reply(chunks=["slow "] * 200, delay=0.05)
    env = {"OPENAI_BASE_URL": fake.url, **OFF["budget"], **OFF["visits"], **(OFF["share"] if off else {})}
    with server(env) as (port, _):
        clients = [await connect(port, ATTACKER) for _ in range(sockets)]
        for n, ws in enumerate(clients):
            for k in range(2):
                await subscribe(ws, room(f"{n}-{k}"))
                await perform(ws, room(f"{n}-{k}"), "send_message", user_content="go", user_id=f"{n}-{k}")
        await asyncio.sleep(1)
        fake.default = Reply(chunks=["for you"])
        answered = await bystander_answer(port)
        await asyncio.gather(*(ws.close() for ws in clients))
    fake.default = Reply()
    return f"{2 * sockets} questions from one address; bystander {answered}"


async def redis_memory(fake: FakeOpenAI, seconds: float, off: bool) -> str:
    with redis() as (url, _):
        env = {"OPENAI_BASE_URL": fake.url, **OFF["budget"], **OFF["visits"], **(OFF["redis"] if off else {})}
        with server(env, "--pubsub", url) as (port, _):
            client = __import__("redis").Redis.from_url(url)
            before = client.info("memory")["used_memory"]
            await loop_questions(port, seconds, "q" * 32_000, new_rooms=True)
            after = client.info("memory")["used_memory"]
            client.close()
    return f"Redis used_memory {before / 2**20:.1f} -> {after / 2**20:.1f} MiB"


async def system_prompt(fake: FakeOpenAI, off: bool) -> str:
    fake.requests.clear()
    with server({"OPENAI_BASE_URL": fake.url, **(OFF["system"] if off else {})}) as (port, _):
        ws = await connect(port, ATTACKER)
        await subscribe(ws, room(1))
        await perform(ws, room(1), "send_message", user_content="hi", system_content="s" * 1_000_017, user_id=1)
        while (frame := (await recv(ws)).get("message", {})).get("event") not in ("done", "error"):
            pass
    sent = max((len(m["content"]) for request in fake.requests for m in request.messages), default=0)
    outcome = frame["error"]["category"] if frame.get("event") == "error" else frame["event"]
    return f"{outcome}; longest message upstream {sent:,} chars"


async def sweep(seconds: float, off: bool) -> str:
    """100 sockets subscribe to numbered rooms and ask each one's ``history``."""
    with server(OFF["visits"] if off else {}) as (port, _):
        clients = [await connect(port, ATTACKER) for _ in range(100)]
        end = time.monotonic() + seconds
        read = 0

        async def sweeper(n: int, ws: ClientConnection) -> int:
            count, turn = 0, 0
            while time.monotonic() < end:
                name = n + 100 * turn
                turn += 1
                try:
                    with contextlib.suppress(TimeoutError):  # past the command rate, commands are dropped
                        if await subscribe(ws, room(name), 1):
                            await perform(ws, room(name), "history")
                            frame = (await recv(ws, 1)).get("message", {})
                            count += frame.get("event") == "history"
                            await ws.send(json.dumps({"command": "unsubscribe", "identifier": room(name)}))
                except websockets.ConnectionClosed:  # closed for flooding commands: connects again
                    ws = clients[n] = await connect(port, ATTACKER)
            return count

        read = sum(await asyncio.gather(*(sweeper(n, ws) for n, ws in enumerate(clients))))
        await asyncio.gather(*(ws.close() for ws in clients))
    return f"{read:,} rooms' history read in {seconds:.0f} s ({read / seconds:,.0f}/s)"


async def guest(fake: FakeOpenAI) -> str:
    """Alice asks in the demo's chat (``?name=alice``, as the Vue chat connects); then a second
    browser presents the same ``?name=alice`` (read off an access log) and asks for her room's history."""
    with server({"OPENAI_BASE_URL": fake.url}) as (port, _):
        alice = await connect(port, BYSTANDER, "?name=alice")
        await subscribe(alice, room("alice"))
        await perform(alice, room("alice"), "send_message", user_content="my secret", user_id="alice")
        while (await recv(alice)).get("message", {}).get("event") not in ("done", "error"):
            pass
        mallory = await connect(port, ATTACKER, "?name=alice")
        await subscribe(mallory, room("alice"))
        await perform(mallory, room("alice"), "history")
        messages = (await recv(mallory)).get("message", {}).get("messages", [])
        await asyncio.gather(alice.close(), mallory.close())
    return f"the second browser reads {len(messages)} of alice's messages"


async def head_and_files() -> tuple[str, str]:
    """A 70 KB request head in one write; ``/.env`` of a static site; a typo in a boolean."""
    with tempfile.TemporaryDirectory() as site:
        Path(site, "index.html").write_text("<p>chat</p>")
        Path(site, ".env").write_text("OPENAI_API_KEY=sk-secret")
        with server({"CABLE_DEMO_STATIC": site}) as (port, _):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
            head = sock.recv(64).split(b"\r\n")[0].decode()
            sock.close()
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(b"GET /.env HTTP/1.1\r\nHost: x\r\n\r\n")
            dotfile = sock.recv(64).split(b"\r\n")[0].decode()
            sock.close()
    typo = subprocess.run(
        [str(BIN / "cable-server"), "--port", str(free_port())],
        env={**os.environ, "CABLE_LLM_ALLOW_CLIENT_SYSTEM_PROMPT": "flase"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    said = (typo.stderr.strip().splitlines() or ["?"])[-1][:100]
    return f"70 KB head: {head}; /.env: {dotfile}", f"exit {typo.returncode}: {said}"


class Rows(list[Row]):
    """The table's rows, each printed as it is measured."""

    def append(self, row: Row) -> None:
        super().append(row)
        print(f"| {row.number} | {row.attack} | {row.off} | {row.on} |", flush=True)


async def run(only: set[str], quick: bool) -> list[Row]:
    seconds = 3.0 if quick else 8.0
    rows = Rows()
    wanted: Callable[[str], bool] = lambda number: not only or number in only  # noqa: E731
    print("### Abuse by volume: the attack, and what it does with its limit off and on\n")
    print("| # | attack (from one address) | limit off | limit on |")
    print("|---|---|---|---|", flush=True)

    async def both(number: str, attack: str, measure: Callable[[bool], Awaitable[str]]) -> None:
        if wanted(number):
            print(f"row {number}...", file=sys.stderr, flush=True)
            rows.append(Row(number, attack, await measure(True), await measure(False)))

    await both("1", f"one socket floods pings for {seconds:.0f} s", lambda off: frames(seconds, off))
    sockets = 40 if quick else 400
    await both("2", f"{sockets} sockets each hold 1 MB of an unfinished frame", lambda off: incomplete(sockets, off))
    async with FakeOpenAI(Reply(chunks=["ok"] * 20, delay=0.01)) as fake:
        await both(
            "3", f"10 sockets loop a 32,000-char question + stop for {seconds:.0f} s", lambda off: budget(fake, seconds, off)
        )
        attackers = 100 if quick else 550
        await both("4", f"{attackers} sockets x 2 rooms of slow answers", lambda off: share(fake, attackers, off))
        long = seconds if quick else 15.0
        await both(
            "5",
            f"the loop of 3 on --pubsub redis://, a new room each time, {long:.0f} s",
            lambda off: redis_memory(fake, long, off),
        )
        await both("6", "system_content of 1,000,017 chars", lambda off: system_prompt(fake, off))
    await both("7", f"100 sockets sweep numbered rooms for {seconds:.0f} s", lambda off: sweep(seconds, off))
    if wanted("8"):
        files, typo = await head_and_files()
        rows.append(Row("8-9", "a 70 KB head in one read; a dotfile of the static site", "200 and /.env served (issue)", files))
        rows.append(Row("10", "CABLE_LLM_ALLOW_CLIENT_SYSTEM_PROMPT=flase", "read as true (issue)", typo))
    if wanted("11"):
        async with FakeOpenAI(Reply(chunks=["ok"])) as fake:
            attack = "the demo's ?name=alice presented by another browser"
            rows.append(Row("11", attack, "reads and resets her history (issue)", await guest(fake)))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller attacks, shorter runs")
    parser.add_argument("--only", default="", help="rows to run, e.g. 1,4 (8 runs 8 to 10)")
    args = parser.parse_args(argv)
    asyncio.run(run({part.strip() for part in args.only.split(",") if part.strip()}, args.quick))


if __name__ == "__main__":
    main()
