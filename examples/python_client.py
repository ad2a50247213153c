"""Ask GptChatChannel one question from Python, speaking the ActionCable protocol with ``websockets``.

    .venv/bin/python examples/python_client.py ["Your question"] [--url ws://127.0.0.1:8000/cable]

The answer is printed as it streams; the exit status is 0 when it finished, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

import websockets

TERMINAL = {"done", "error", "stopped"}


async def ask(url: str, question: str, user: str) -> int:
    scheme, _, host = url.partition("://")
    origin = f"{'https' if scheme == 'wss' else 'http'}://{host.split('/')[0]}"
    identifier = json.dumps({"channel": "GptChatChannel", "room": user})
    # The demo server identifies a connection by ?name=; the room must be that name.
    async with websockets.connect(f"{url}?name={user}", subprotocols=["actioncable-v1-json"], origin=origin) as ws:  # type: ignore[list-item,arg-type]
        async for raw in ws:
            frame = json.loads(raw)
            kind = frame.get("type")
            if kind == "welcome":
                await ws.send(json.dumps({"command": "subscribe", "identifier": identifier}))
            elif kind == "confirm_subscription":
                data = {"action": "send_message", "user_content": question, "user_id": user}
                await ws.send(json.dumps({"command": "message", "identifier": identifier, "data": json.dumps(data)}))
            elif kind in ("reject_subscription", "disconnect"):
                print(f"server said {frame}", file=sys.stderr)
                return 1
            elif frame.get("identifier") == identifier and "message" in frame:  # pings carry a message too
                message = frame["message"]
                print(message["content"], end="", flush=True)
                if message.get("event") == "error":
                    print(f"\nerror ({message['error']['category']}): {message['error']['message']}", file=sys.stderr)
                if message.get("event") in TERMINAL:
                    print()
                    return 0 if message["event"] == "done" else 1
    return 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("question", nargs="?", default="Hello! Who are you?")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/cable")
    args = parser.parse_args()
    sys.exit(asyncio.run(ask(args.url, args.question, f"python-{os.getpid()}")))


if __name__ == "__main__":
    main()
