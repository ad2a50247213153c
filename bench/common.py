"""Helpers every benchmark shares: ports, child processes, and what ``/proc`` says about them.

CPU and memory are read from ``/proc/<pid>/stat`` and ``/proc/<pid>/status`` rather than
sampled by a profiler, so that measuring costs nothing and works the same for a Python and a
Ruby process (for puma, every thread of the one process is counted).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BIN",
    "ROOT",
    "CpuSample",
    "ServerFailed",
    "cpu_sample",
    "cpu_seconds",
    "free_port",
    "pct",
    "process",
    "process_tree",
    "raise_nofile",
    "rss_bytes",
]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TICK = os.sysconf("SC_CLK_TCK")


class ServerFailed(RuntimeError):
    """A process under test did not start, or died during a measurement."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (all its threads, ended ones too) so far, in seconds; 10 ms steps."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


@dataclass(frozen=True)
class CpuSample:
    """CPU of a process at one moment, read two ways: ``/proc/<pid>/stat`` counts in clock ticks
    (10 ms: too coarse for a 50 ms window) but includes threads that ended; the threads'
    ``schedstat`` counts nanoseconds, for live threads only."""

    precise: float
    coarse: float

    def __sub__(self, before: CpuSample) -> float:
        """CPU seconds between ``before`` and this sample: the precise count, unless threads that
        ended in between make it fall short of the coarse one by more than two ticks."""
        precise, coarse = self.precise - before.precise, self.coarse - before.coarse
        return coarse if coarse > precise + 2 / TICK else precise


def cpu_sample(pid: int) -> CpuSample:
    """``pid``'s CPU now, its child processes' included (``--workers``; see :class:`CpuSample`)."""
    coarse = 0.0
    precise = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, ValueError):  # a child may end while we read
            coarse += cpu_seconds(member)
        for path in Path(f"/proc/{member}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):  # a thread may end while we read
                precise += int(path.read_text().split()[0])
    return CpuSample(precise / 1e9, coarse)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from ``/proc/<pid>/task/*/children``."""
    found, pending = [], [pid]
    while pending:
        member = pending.pop()
        found.append(member)
        for path in Path(f"/proc/{member}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                pending += [int(child) for child in path.read_text().split()]
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (``VmRSS``), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ServerFailed(f"no VmRSS for pid {pid}")


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``, which must not be empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def raise_nofile() -> None:
    """Soft RLIMIT_NOFILE up to the hard limit: 15,000 sockets need more than the usual 1,024.

    Used in the load generator and, as ``preexec_fn``, in every server the bench starts.
    """
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise ServerFailed(f"exited with status {proc.returncode} before listening on {port}") from None
            if time.monotonic() > deadline:
                raise ServerFailed(f"not listening on {port} after {timeout:.0f} s") from None
            time.sleep(0.05)


@contextlib.contextmanager
def process(
    args: Sequence[str],
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    start_timeout: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` until the block ends, once it listens on ``port``.

    Its output goes to a temporary file (a pipe nobody reads would block it once full); on a
    failure to start, the file's tail is in the error. The process gets the hard RLIMIT_NOFILE.
    Stopped with SIGTERM, then SIGKILL after 10 s (a draining server must not hold the run).
    """
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_nofile,
        )
        try:
            try:
                _wait_listening(proc, port, start_timeout)
            except ServerFailed as exc:
                log.seek(0)
                tail = log.read().decode(errors="replace")[-2000:]
                raise ServerFailed(f"{Path(args[0]).name}: {exc}\n{tail}") from None
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
