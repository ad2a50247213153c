"""Serve real connections on the newest uvicorn and websockets on the package index.

The fast path builds on private internals of uvicorn and websockets (cable_server/compat.py),
so pyproject.toml bounds both to the releases verified. This check makes a release past those
bounds a decision, not a surprise: in a throwaway venv it installs the newest releases
(ignoring our bounds; the other dependencies are the project venv's), starts `cable-server`
there and runs a client through welcome, subscribe, broadcast and the graceful restart. It
prints the versions found and the path the server took:

- "fast path": the releases are verified and the internals are as expected;
- "fallback": a release is not verified, the server said so in one warning and served through
  uvicorn's own protocols (raise the bounds after running the suite on it);

and fails only when connections break (or the warning is not exactly one). Run it from the
project venv: `.venv/bin/python scripts/newest_releases.py [REQUIREMENT...]`; requirements (e.g.
`websockets==17.0`) replace the default, the newest of uvicorn, websockets, httptools and h11.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cable_server.compat import VERIFIED, release_differences  # noqa: E402
from tests.rawws import CLOSE, Closed, RawCable  # noqa: E402

PACKAGES = ("uvicorn", "websockets", "httptools", "h11")
WARNING = "not verified for the fast path"
ECHO = '{"channel":"EchoChannel","room":"newest"}'
TIMEOUT = 15.0


class Broken(Exception):
    """A connection did not go as it must, whatever the releases."""


def install(venv: Path, requirements: list[str]) -> dict[str, str]:
    """A venv holding ``requirements`` (newest allowed), then the project's venv; their versions."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(ROOT / "scripts" / "uv"), "pip", "install", "--python", str(python), "--quiet", "--upgrade"]
    done = subprocess.run([*pip, *requirements], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"newest_releases: uv pip install failed:\n{done.stdout}{done.stderr}")
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    # After the venv's own packages: the project (from source) and the rest of its dependencies.
    (site / "cable_server_project.pth").write_text(f"{ROOT}\n{sysconfig.get_paths()['purelib']}\n")
    show = f"import importlib.metadata as m\nfor p in {list(PACKAGES)}: print(p, m.version(p))"
    lines = subprocess.run([str(python), "-c", show], capture_output=True, text=True, check=True).stdout.split("\n")
    return dict(line.split(" ", 1) for line in lines if line)


async def exercise(port: int, server: asyncio.subprocess.Process) -> None:
    """Two clients: welcome, subscribe, a broadcast to both; then SIGTERM: both told to reconnect."""
    clients = [await RawCable.connect(port, f"/cable?user={name}") for name in ("alice", "bob")]
    try:
        for client in clients:
            if (await client.recv()).get("type") != "welcome":
                raise Broken("no welcome")
            await client.subscribe(ECHO)
        await clients[0].send({"command": "message", "identifier": ECHO, "data": '{"action":"shout","payload":{"n":1}}'})
        for client in clients:
            message = await client.recv()
            while message.get("type") == "ping":
                message = await client.recv()
            if message.get("message") != {"n": 1}:
                raise Broken(f"the broadcast did not arrive: {message}")
        server.send_signal(signal.SIGTERM)
        for client in clients:
            while (message := await client.recv()).get("type") != "disconnect":
                pass
            if message != {"type": "disconnect", "reason": "server_restart", "reconnect": True}:
                raise Broken(f"not a graceful restart: {message}")
            if not any(opcode == CLOSE for opcode, _ in await client.read_until_closed()):
                raise Broken("no close frame after the disconnect")
    finally:
        for client in clients:
            client.close()


async def serve_and_connect(python: Path) -> tuple[int, str]:
    """Run the test app in ``python`` on an inherited socket; its exit code and output."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = await asyncio.create_subprocess_exec(
        str(python),
        *("-m", "cable_server", "tests.fixture_app:create_app", "--fd", str(listener.fileno()), "--log-level", "warning"),
        pass_fds=[listener.fileno()],
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    listener.close()
    assert server.stdout is not None
    try:
        await asyncio.wait_for(exercise(port, server), TIMEOUT)
        code = await asyncio.wait_for(server.wait(), TIMEOUT)
    except (Broken, OSError, EOFError, Closed, TimeoutError) as exc:
        server.kill()
        await server.wait()
        output = (await server.stdout.read()).decode()
        raise Broken(f"{type(exc).__name__}: {exc}\n{output}") from None
    return code, (await server.stdout.read()).decode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("requirements", nargs="*", default=list(PACKAGES), help="what to install (default: the newest)")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cable-newest-") as tmp:
        venv = Path(tmp, "venv")
        versions = install(venv, args.requirements)
        found = ", ".join(
            f"{package} {version}" + (" (verified)" if package in VERIFIED and not release_differences(package, version) else "")
            for package, version in versions.items()
        )
        print(f"newest_releases: {found}", flush=True)
        try:
            code, output = asyncio.run(serve_and_connect(venv / "bin" / "python"))
        except Broken as exc:
            print(f"newest_releases: FAILED, connections broke on {found}: {exc}", file=sys.stderr)
            return 1
    warnings = [line for line in output.splitlines() if WARNING in line]
    elapsed = time.monotonic() - started
    if code not in (0, -signal.SIGTERM) or len(warnings) > 1:
        print(f"newest_releases: FAILED (exit {code}, {len(warnings)} warnings):\n{output}", file=sys.stderr)
        return 1
    path = f"fallback, with one warning:\n  {warnings[0].strip()}" if warnings else "fast path"
    print(f"newest_releases: connections served ({path}) in {elapsed:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
