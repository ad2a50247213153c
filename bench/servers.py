"""The servers under test, started fresh for every measurement: ours and Rails, each as a fixture or a chat.

- ours, fixture: ``python -m protocol_tests.fixture`` (the conformance fixture's channels).
- ours, chat: ``cable-server`` (the demo: the real GptChatChannel and the ``openai`` SDK).
- Rails, both: puma (one process, threads 4:16, as ``protocol_tests/rails_reference/start``)
  serving ``bench/rails/config.ru``: the same fixture channels plus a GptChatChannel that
  streams from the same fake OpenAI server with ``Net::HTTP``.

Both log at warning level (Rails' ``CABLE_LOG_LEVEL=warn``): per-message log lines are not what
is compared. The fake OpenAI server (``python -m cable_server.testing --scripted``) is a third
process; its CPU is reported where it works.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cable_server

from .common import BIN, ROOT, CpuSample, ServerFailed, cpu_sample, free_port, process, rss_bytes

__all__ = ["ORIGIN", "SERVERS", "Server", "fake_openai", "rails_available", "redis", "start", "versions"]

ORIGIN = "http://localhost:3000"
SERVERS = ("ours", "rails")
RAILS_APP = ROOT / "bench" / "rails"
#: No model budget over time, room visit limit or per-address share of the pool: the load
#: generator is one address asking for up to a thousand answers at once, which a public
#: deployment's defaults rightly refuse (see the README's limits).
UNBUDGETED = {
    **{
        f"CABLE_LLM_{measure}_PER_MINUTE{per}": "0"
        for measure in ("REQUESTS", "TOKENS")
        for per in ("", "_PER_USER", "_PER_ADDRESS")
    },
    "CABLE_LLM_ROOM_VISITS_PER_MINUTE_PER_CONNECTION": "0",
    "CABLE_LLM_ROOM_VISITS_PER_MINUTE_PER_ADDRESS": "0",
    "CABLE_LLM_MAX_CONCURRENT_PER_ADDRESS": "0",
    "CABLE_LLM_MAX_QUEUED_PER_ADDRESS": "0",
}
#: The chat settings both servers get (ours reads the CABLE_LLM_* ones): no history, no cap on
#: concurrent generations below the benchmark's 100 (our default is 64), no budget.
CHAT_ENV = {"OPENAI_API_KEY": "sk-bench", "CABLE_LLM_MAX_CONCURRENT": "1000", "CABLE_LLM_HISTORY_MESSAGES": "0", **UNBUDGETED}


@dataclass
class Server:
    """A running server: where it listens and the process whose CPU and memory are read."""

    kind: str
    port: int
    proc: subprocess.Popen[bytes]
    _admin: http.client.HTTPConnection | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        """The server process (puma's for Rails)."""
        return self.proc.pid

    def cpu(self) -> CpuSample:
        """CPU used so far (all threads: puma's too)."""
        self.check()
        return cpu_sample(self.pid)

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        self.check()
        return rss_bytes(self.pid)

    def check(self) -> None:
        """Raise :class:`ServerFailed` if the process has exited."""
        if self.proc.poll() is not None:
            raise ServerFailed(f"{self.kind} server exited with status {self.proc.returncode}")

    def broadcast(self, stream: str, body: Any) -> None:
        """``POST /__admin/broadcast?stream=...``: the fixture's ``ActionCable.server.broadcast`` hook
        (one kept-alive HTTP connection, so each broadcast costs no TCP handshake)."""
        if self._admin is None:
            self._admin = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self._admin.request("POST", f"/__admin/broadcast?stream={stream}", json.dumps(body), {"Content-Type": "application/json"})
        response = self._admin.getresponse()
        response.read()
        if response.status != 200:
            raise ServerFailed(f"{self.kind}: admin broadcast answered {response.status}")


def rails_available() -> bool:
    """Whether ruby, puma and ActionCable are installed (``protocol_tests/rails_reference/install``)."""
    if not shutil.which("puma") or not shutil.which("ruby"):
        return False
    return subprocess.run(["ruby", "-e", 'require "action_cable"'], capture_output=True).returncode == 0


@contextlib.contextmanager
def start(
    kind: str, app: str = "fixture", openai_url: str | None = None, *, pubsub: str | None = None, workers: int = 1
) -> Iterator[Server]:
    """Start server ``kind`` ("ours" or "rails") serving ``app`` ("fixture" or "chat"); stop it after.

    ``pubsub`` (a ``redis://`` URL) and ``workers`` apply to our chat server: broadcasts, answers'
    frames, history and claims then live in that Redis, shared by the worker processes.
    """
    port = free_port()
    env = {**CHAT_ENV, "OPENAI_BASE_URL": openai_url} if openai_url else {}
    if kind == "rails":
        command = ["puma", "--bind", f"tcp://127.0.0.1:{port}", "--threads", "4:16", "--environment", "production"]
        command.append("config.ru")
        env["CABLE_LOG_LEVEL"] = "warn"
        cwd = RAILS_APP
    elif app == "chat":
        command = [str(BIN / "cable-server"), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        command += ["--allowed-origins", ORIGIN]
        if pubsub:
            command += ["--pubsub", pubsub, "--workers", str(workers)]
        cwd = ROOT
    else:
        command = [sys.executable, "-m", "protocol_tests.fixture", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--log-level", "warning"]
        cwd = ROOT
    with process(command, port, env, cwd) as proc:
        server = Server(kind, port, proc)
        try:
            yield server
        finally:
            if server._admin is not None:
                server._admin.close()


@contextlib.contextmanager
def fake_openai() -> Iterator[tuple[str, int]]:
    """The scripted fake OpenAI server: its ``base_url`` and pid."""
    port = free_port()
    with process([sys.executable, "-m", "cable_server.testing", "--scripted", "--port", str(port)], port) as proc:
        yield f"http://127.0.0.1:{port}/v1", proc.pid


@contextlib.contextmanager
def redis() -> Iterator[tuple[str, int]]:
    """A fresh ``redis-server`` on a free port: its URL and pid (its CPU is reported)."""
    from cable_server.testing import RedisServer

    with RedisServer() as server:
        assert server.process is not None
        yield server.url, server.process.pid


def _output(*command: str) -> str:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


@functools.cache
def versions(with_rails: bool) -> dict[str, str]:
    """What the header line states: machine, Python side, Rails side."""
    import uvicorn

    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    found = {
        "machine": f"{len(os.sched_getaffinity(0))} cores ({model}), Linux {platform.release()}",
        "ours": f"cable-server {cable_server.__version__}, Python {platform.python_version()}, uvicorn {uvicorn.__version__} "
        f"(its 'auto' loop: {'uvloop' if importlib.util.find_spec('uvloop') else 'asyncio'}), 1 process",
    }
    if with_rails:
        ruby = _output("ruby", "-e", 'require "action_cable"; print RUBY_VERSION, " ", ActionCable.version')
        ruby_version, _, actioncable = ruby.partition(" ")
        puma = _output("puma", "--version").removeprefix("puma version ")
        found["rails"] = f"ActionCable {actioncable}, Ruby {ruby_version}, puma {puma} (1 process, threads 4:16, worker pool 4)"
    return found
