"""The examples a newcomer runs: the Node client and the Python client, against the demo app (the Vue 2 and
Vue 3 pages of the blog: tests/test_blog_frontend.py)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from cable_server import Settings
from cable_server.demo import create_app
from cable_server.llm import ChatSettings
from cable_server.testing import FakeOpenAI, Reply

from .conftest import RunningServer, ServerFactory
from .frontend import EXAMPLES, npm_ci

ANSWER = Reply(chunks=["Examples", " talk", " to", " cable-server", "."], delay=0.15)


@pytest.fixture
async def demo(serve: ServerFactory, fake_openai: FakeOpenAI) -> RunningServer:
    cable = create_app(ChatSettings(api_key="sk-test", base_url=fake_openai.url, max_retries=0))
    cable.settings = Settings(shutdown_timeout=1.0, ping_interval=0.2)  # pings arrive while answers stream
    return await serve(cable)


async def run(*command: str, cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.fixture(scope="session")
def examples_node_modules() -> Path:
    """``npm ci`` in examples/ for node_client.mjs."""
    return npm_ci(EXAMPLES, "@rails/actioncable", "ws")


async def test_the_node_client_prints_the_streamed_answer(
    demo: RunningServer, fake_openai: FakeOpenAI, examples_node_modules: Path
) -> None:
    """node examples/node_client.mjs URL QUESTION: the plain @rails/actioncable client, exit 0."""
    fake_openai.push(ANSWER)
    code, out, err = await run("node", "node_client.mjs", demo.url, "Hello from Node", cwd=EXAMPLES)
    assert (code, out) == (0, ANSWER.text + "\n"), err
    assert fake_openai.requests[0].messages[-1]["content"] == "Hello from Node"


async def test_the_python_client_prints_the_streamed_answer(demo: RunningServer, fake_openai: FakeOpenAI) -> None:
    """python examples/python_client.py QUESTION --url URL: exit 0 with the answer on stdout."""
    fake_openai.push(ANSWER)
    code, out, err = await run(sys.executable, "python_client.py", "Hello from Python", "--url", demo.url, cwd=EXAMPLES)
    assert (code, out) == (0, ANSWER.text + "\n"), err


async def test_the_python_client_reports_an_upstream_error(demo: RunningServer, fake_openai: FakeOpenAI) -> None:
    """An upstream failure ends the client with status 1 and the error on stderr (the server's
    sentence: what the provider said stays in the server's log)."""
    fake_openai.push(Reply.error(401, "Incorrect API key provided."))
    code, _, err = await run(sys.executable, "python_client.py", "Hi", "--url", demo.url, cwd=EXAMPLES)
    assert code == 1 and "error (auth): The model provider refused the server's credentials." in err
    assert "Incorrect API key" not in err
