"""Real frontends for the end-to-end tests: built apps, headless Chromium, nginx with the repo's config.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright for Python; nginx is Debian's,
run on the repo's ``nginx.conf`` with only its ports, paths and certificate swapped in.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
CHROMIUM = "/usr/bin/chromium"
# No network here: without these, Chromium keeps trying to reach Google's services.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    """A loopback port free right now (for processes that cannot report the one they bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def listening(port: int, process: asyncio.subprocess.Process, name: str, seconds: float) -> None:
    """Return once ``port`` accepts connections; fail if ``process`` exits first or ``seconds`` pass."""
    for _ in range(int(seconds * 20)):
        if process.returncode is not None:
            output = await process.stdout.read() if process.stdout else b""
            raise AssertionError(f"{name} exited early:\n{output.decode(errors='replace')}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        return
    raise AssertionError(f"{name} did not start listening within {seconds:.0f} s")


def npm(folder: Path, *args: str) -> None:
    """Run ``npm ARGS`` in ``folder``; the test fails with npm's output if it does."""
    binary = shutil.which("npm")
    if binary is None:
        pytest.fail("node and npm are required (apt-get install nodejs npm)")
    result = subprocess.run([binary, *args], cwd=folder, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:
        pytest.fail(f"npm {' '.join(args)} failed in {folder}:\n{result.stdout}\n{result.stderr}")


def npm_ci(folder: Path, *packages: str) -> Path:
    """``npm ci`` in ``folder`` unless its node_modules was installed from its current lock file
    and holds each of ``packages``."""
    modules = folder / "node_modules"
    installed = modules / ".package-lock.json"  # npm writes it on every install
    current = installed.exists() and installed.stat().st_mtime >= (folder / "package-lock.json").stat().st_mtime
    if not current or not all((modules / name / "package.json").exists() for name in packages):
        npm(folder, "ci", "--no-audit", "--no-fund")
    return modules


def npm_build(folder: Path) -> Path:
    """``npm ci`` when needed, then ``npm run build`` in ``folder``; returns its dist/."""
    npm_ci(folder)
    npm(folder, "run", "build")
    return folder / "dist"


@pytest.fixture(scope="session")
def vue_chat_dist() -> Path:
    """examples/vue-chat, freshly built."""
    return npm_build(EXAMPLES / "vue-chat")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


async def screenshot(page: Page, name: str) -> Path:
    """Save the page as ``test-artifacts/<name>.png`` (kept after the run)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


# --- nginx ----------------------------------------------------------------------------------


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made with openssl for this test run."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def templated_nginx_conf(backend_port: int, http_port: int, https_port: int, static_root: Path, cert: Path, key: Path) -> str:
    """The repo's nginx.conf with this run's ports and paths; each replaced line must exist once."""
    conf = (ROOT / "nginx.conf").read_text()
    swaps = {
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{backend_port};",
        "root /srv/cable-server/examples/vue-chat/dist;": f"root {static_root};",
        "/etc/ssl/certs/cable-server.pem;": f"{cert};",
        "/etc/ssl/private/cable-server.key;": f"{key};",
        "worker_processes auto;": "worker_processes 1;\nuser root;  # test runs as root; checkouts may be private",
    }
    for old, new in swaps.items():
        assert conf.count(old) == 1, f"nginx.conf no longer has exactly one {old!r}"
        conf = conf.replace(old, new)
    return conf


@dataclass
class Nginx:
    http_port: int
    https_port: int
    process: asyncio.subprocess.Process

    def url(self, scheme: str) -> str:
        return f"{scheme}://127.0.0.1:{self.http_port if scheme == 'http' else self.https_port}"


NginxFactory = Callable[[int, Path], Awaitable[Nginx]]


@pytest.fixture
async def nginx(tmp_path: Path) -> AsyncIterator[NginxFactory]:
    """``await nginx(backend_port, static_root)``: the repo's nginx.conf in front of a backend."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(binary, os.X_OK):
        pytest.fail("nginx is missing: apt-get install nginx")
    started: list[Nginx] = []

    async def start(backend_port: int, static_root: Path) -> Nginx:
        http_port, https_port = free_port(), free_port()
        cert, key = self_signed_certificate(tmp_path)
        conf = tmp_path / "nginx.conf"
        conf.write_text(templated_nginx_conf(backend_port, http_port, https_port, static_root, cert, key))
        check = subprocess.run(
            [binary, "-t", "-p", str(tmp_path), "-c", str(conf), "-g", f"pid {tmp_path}/nginx.pid;"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stderr
        process = await asyncio.create_subprocess_exec(
            binary, "-p", str(tmp_path), "-c", str(conf), "-g", f"daemon off; pid {tmp_path}/nginx.pid; error_log stderr;"
        )
        server = Nginx(http_port, https_port, process)
        started.append(server)
        await listening(http_port, process, "nginx", 5)
        return server

    yield start
    for server in started:
        if server.process.returncode is None:
            server.process.terminate()
        await server.process.wait()
