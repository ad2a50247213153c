"""The ``cable-server`` command, run as users run it: a real process on a real port."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets

from cable_server.testing import FakeOpenAI, Reply
from protocol_tests.client import CableClient, closed_with, ident

from .frontend import self_signed_certificate
from .processes import COMMAND, ROOT, Launcher, trust_anything


def run_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COMMAND, *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)


def test_help_lists_every_option() -> None:
    """cable-server --help exits 0 and documents the app argument and every option."""
    result = run_command("--help")
    assert result.returncode == 0
    for option in (
        "APP",
        "--host",
        "--port",
        "--path",
        "--allowed-origins",
        "--log-level",
        "--log-format",
        "--ping-interval",
        "--max-subscriptions",
        "--command-rate",
        "--command-burst",
        "--frame-rate",
        "--frame-burst",
        "--incomplete-timeout",
        "--max-incomplete-bytes-per-address",
        "--max-connections-per-address",
        "--ssl-certfile",
        "--ssl-keyfile",
        "--ssl-keyfile-password",
        "--metrics-secret",
    ):
        assert option in result.stdout


def test_tls_files_are_checked_before_serving(tmp_path: Path) -> None:
    """A key without a certificate, a missing file or one that is no certificate: one line, no traceback."""
    not_pem = tmp_path / "cert.pem"
    not_pem.write_text("not a certificate")
    for args, complaint in (
        (("--ssl-keyfile", "key.pem"), "--ssl-keyfile needs --ssl-certfile"),
        (("--ssl-certfile", str(tmp_path / "missing.pem")), "cannot use certificate"),
        (("--ssl-certfile", str(not_pem)), "cannot use certificate"),
    ):
        result = run_command(*args)
        assert result.returncode != 0 and complaint in result.stderr and "Traceback" not in result.stderr


async def test_an_encrypted_key_needs_its_password(launch: Launcher, tmp_path: Path) -> None:
    """An encrypted key: without --ssl-keyfile-password a one-line error (no prompt), with it wss:// works."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-passout", "pass:s3cret", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    refused = subprocess.run(
        [COMMAND, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert refused.returncode != 0 and "cannot use certificate" in refused.stderr and "Traceback" not in refused.stderr
    server = await launch(
        "tests.fixture_app:create_app", "--ssl-certfile", str(cert), "--ssl-keyfile", str(key), "--ssl-keyfile-password", "s3cret"
    )
    await CableClient.connect(
        f"wss://127.0.0.1:{server.port}/cable", origin=f"https://127.0.0.1:{server.port}", ssl=trust_anything()
    )


async def test_one_pem_with_certificate_and_key_serves_wss(launch: Launcher, tmp_path: Path) -> None:
    """--ssl-certfile alone, naming a PEM that holds the key too, serves wss://."""
    cert, key = self_signed_certificate(tmp_path)
    both = tmp_path / "both.pem"
    both.write_text(cert.read_text() + key.read_text())
    server = await launch("tests.fixture_app:create_app", "--ssl-certfile", str(both))
    client = await CableClient.connect(
        f"wss://127.0.0.1:{server.port}/cable", origin=f"https://127.0.0.1:{server.port}", ssl=trust_anything()
    )
    await client.subscribe(ident("EchoChannel", room="tls"))


@pytest.mark.parametrize(
    ("target", "complaint"),
    [
        ("no_colon_here", "must look like 'module:attribute'"),
        ("no_such_module_xyz:app", "cannot load"),
        ("tests.fixture_app:no_such_attribute", "cannot load"),
        ("tests.fixture_app:EchoChannel", "is not a CableServer"),
    ],
)
def test_a_bad_app_argument_exits_with_a_clear_message(target: str, complaint: str) -> None:
    """An APP that cannot be loaded ends the command with a one-line reason, not a traceback."""
    result = run_command(target)
    assert result.returncode != 0
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("variable", "value", "complaint"),
    [
        ("CABLE_LLM_HTTP_CLIENT", "requests", "CABLE_LLM_HTTP_CLIENT must be one of aiohttp, httpx, got 'requests'"),
        ("CABLE_LLM_MAX_RETRIES", "two", "CABLE_LLM_MAX_RETRIES must be a number, got 'two'"),
        ("CABLE_LLM_MAX_QUEUED", "-1", "CABLE_LLM_MAX_QUEUED must be a number, 0 or more, got -1"),
        ("CABLE_LLM_MAX_CONCURRENT", "0", "CABLE_LLM_MAX_CONCURRENT must be 1 or more, got 0"),
        ("CABLE_LLM_RESUME_MAX_FRAMES", "0", "CABLE_LLM_RESUME_MAX_FRAMES must be 1 or more, got 0"),
        ("CABLE_LLM_STALL_TIMEOUT", "nan", "CABLE_LLM_STALL_TIMEOUT must be a number, 0 or more, got nan"),
        ("CABLE_FRAME_RATE", "-1", "frame_rate must be a number, 0 or more, got -1.0"),
        ("CABLE_INCOMPLETE_TIMEOUT", "nan", "incomplete_timeout must be a number, 0 or more, got nan"),
        ("CABLE_INCOMPLETE_TIMEOUT", "inf", "incomplete_timeout must be a number, 0 or more, got inf"),
        ("CABLE_PORT", "abc", "CABLE_PORT must be a number, got 'abc'"),
    ],
)
def test_a_chat_setting_it_cannot_take_exits_with_a_clear_message(variable: str, value: str, complaint: str) -> None:
    """A value a setting cannot take (a negative limit read as "none" or "nothing", ``nan`` that
    broke every connection's timer): a one-line reason naming it, not a traceback."""
    env = {**os.environ, "OPENAI_API_KEY": "sk-test", variable: value}
    result = subprocess.run([COMMAND, "--port", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


async def test_serves_an_app_factory_from_the_working_directory(launch: Launcher) -> None:
    """cable-server module:factory serves that app: welcome, subscribe, perform, echo."""
    server = await launch("tests.fixture_app:create_app")
    client = await server.client()
    channel = ident("EchoChannel", room="cli")
    await client.subscribe(channel)
    await client.perform(channel, "echo", said="hi")
    assert (await client.recv())["message"] == {"action": "echo", "said": "hi"}


async def test_sigterm_announces_server_restart_and_exits_cleanly(launch: Launcher) -> None:
    """SIGTERM: every client gets server_restart and a 1000 close, then the process finishes.

    uvicorn re-raises the signal once shut down, so the exit status is "terminated by SIGTERM",
    which service managers count as a clean stop.
    """
    server = await launch("tests.fixture_app:create_app")
    clients = [await server.client() for _ in range(3)]
    server.process.send_signal(signal.SIGTERM)
    for client in clients:
        assert await client.recv_raw() == '{"type":"disconnect","reason":"server_restart","reconnect":true}'
        assert await closed_with(client) == 1000
    assert await asyncio.wait_for(server.process.wait(), 10) in (0, -signal.SIGTERM)
    assert "Finished server process" in await server.output()


async def test_path_and_allowed_origins_options(launch: Launcher) -> None:
    """--path moves the cable; --allowed-origins admits the listed origin and no other."""
    server = await launch("tests.fixture_app:create_app", "--path", "/ws", "--allowed-origins", "https://app.example")
    await server.client("/ws", origin="https://app.example")
    with pytest.raises(websockets.InvalidStatus) as refused:
        await server.client("/ws", origin="https://evil.example")
    assert refused.value.response.status_code == 404
    with pytest.raises(websockets.InvalidStatus):
        await server.client("/cable", origin="https://app.example")


async def test_allowed_origins_star_disables_the_check_with_a_warning(launch: Launcher) -> None:
    """--allowed-origins '*' lets any origin in and says so in the log."""
    server = await launch("tests.fixture_app:create_app", "--allowed-origins", "*")
    await server.client(origin="https://anything.example")
    server.process.send_signal(signal.SIGTERM)
    assert "origin check disabled" in await server.output()


async def test_no_argument_serves_the_demo_page_and_chat(launch: Launcher) -> None:
    """With no APP, the demo: an HTML page at / and a chat room where every member hears a speaker."""
    server = await launch()
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{server.origin}/")
        plain = await http.get(f"{server.origin}/plain")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/cable" in plain.text
    room = ident("ChatChannel", room="lobby")
    alice, bob = await server.client(), await server.client()
    for member in (alice, bob):
        await member.send({"command": "subscribe", "identifier": room})
        assert (await member.recv())["message"]["system"].startswith("you are guest-")
        assert (await member.recv())["type"] == "confirm_subscription"
    await alice.perform(room, "speak", text="hello")
    for member in (alice, bob):
        message = (await member.recv())["message"]
        assert message["text"] == "hello" and message["user"].startswith("guest-")


async def test_the_demo_chat_streams_from_the_endpoint_in_openai_variables(launch: Launcher, fake_openai: FakeOpenAI) -> None:
    """OPENAI_API_KEY and OPENAI_BASE_URL set: `cable-server` answers GptChatChannel from that endpoint."""
    fake_openai.push(Reply(chunks=["from", " the", " endpoint"]))
    server = await launch(env={"OPENAI_API_KEY": "sk-from-env", "OPENAI_BASE_URL": fake_openai.url, "CABLE_LLM_MODEL": "m1"})
    alice = await server.client("/cable?name=alice")
    identifier = ident("GptChatChannel", room="alice")
    await alice.subscribe(identifier)
    await alice.perform(identifier, "send_message", user_content="hi", user_id="alice")
    frames = [(await alice.recv())["message"] for _ in range(5)]
    assert "".join(f["content"] for f in frames) == "from the endpoint" and frames[-1]["event"] == "done"
    request = fake_openai.requests[0]
    assert request.headers["authorization"] == "Bearer sk-from-env" and request.body["model"] == "m1"


async def test_the_demo_chat_answers_offline_without_a_key(launch: Launcher) -> None:
    """No key, no endpoint: the offline model streams a labelled answer word by word."""
    server = await launch(env={"CABLE_LLM_OFFLINE_TOKENS_PER_SECOND": "1000"})
    alice = await server.client("/cable?name=alice")
    identifier = ident("GptChatChannel", room="alice")
    await alice.subscribe(identifier)
    await alice.perform(identifier, "send_message", user_content="Are you there?", user_id="alice")
    frames = [(await alice.recv())["message"]]
    while frames[-1]["event"] != "done":
        frames.append((await alice.recv())["message"])
    text = "".join(f["content"] for f in frames)
    assert text.startswith("**Offline demo model.**") and "Are you there?" in text
    assert sum(f["event"] == "delta" for f in frames) > 20
    server.process.send_signal(signal.SIGTERM)
    assert "offline-demo" in await server.output()


async def test_scripts_demo_serves_the_built_vue_chat(launch: Launcher, vue_chat_dist: Path) -> None:
    """`bash scripts/demo`: the Vue chat at /, its assets, and the plain page at /plain."""
    server = await launch(command=("bash", "scripts/demo"))
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{server.origin}/")
        script = next(line for line in page.text.splitlines() if "/assets/" in line and ".js" in line)
        asset = await http.get(server.origin + script.split('src="')[1].split('"')[0])
        plain = await http.get(f"{server.origin}/plain")
    assert page.status_code == 200 and '<div id="app"></div>' in page.text
    assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
    assert plain.status_code == 200 and "GptChatChannel" in plain.text


async def test_a_static_site_never_serves_dotfiles(launch: Launcher, tmp_path: Path) -> None:
    """``CABLE_DEMO_STATIC`` serves a folder as is; its dotfiles and dot-directories (``.env``,
    ``.git/config``) are 404, as if absent, however the path is spelled."""
    site = tmp_path / "site"
    (site / ".git").mkdir(parents=True)
    (site / "assets" / ".cache").mkdir(parents=True)
    (site / "index.html").write_text("<div id=app></div>")
    (site / "assets" / "app.js").write_text("console.log(1)")
    for secret in (site / ".env", site / ".git" / "config", site / "assets" / ".cache" / "token"):
        secret.write_text("SECRET=hunter2")
    server = await launch(env={"CABLE_DEMO_STATIC": str(site)})
    async with httpx.AsyncClient() as http:
        served = [(await http.get(f"{server.origin}{path}")).status_code for path in ("/", "/assets/app.js")]
        hidden = {
            path: await http.get(f"{server.origin}{path}")
            for path in ("/.env", "/.git/config", "/assets/.cache/token", "/%2Eenv", "/assets/../.env", "/.git/")
        }
    assert served == [200, 200]
    assert {path: response.status_code for path, response in hidden.items()} == dict.fromkeys(hidden, 404)
    assert not any("hunter2" in response.text for response in hidden.values())


async def test_json_logs_are_one_object_per_line_naming_the_connection(launch: Launcher) -> None:
    """--log-format json: every line of the output is a JSON object with time, level, logger and message;
    records about a client carry its connection id, peer and identifiers, limit hits their kind too."""
    server = await launch(
        "tests.fixture_app:create_app",
        "--log-format",
        "json",
        "--max-subscriptions",
        "1",
        command=(sys.executable, "-m", "cable_server"),
    )
    alice = await CableClient.connect(
        f"ws://127.0.0.1:{server.port}/cable?user=alice",
        origin=server.origin,
        subprotocols=("actioncable-v1-ext-json",),
        welcome=False,
    )
    sid = (await alice.recv())["sid"]  # restores the session: a secret the log must not hold
    await alice.subscribe(ident("EchoChannel", room="one"))
    await alice.send({"command": "subscribe", "identifier": ident("EchoChannel", room="two")})
    assert (await alice.recv())["type"] == "reject_subscription"
    server.process.send_signal(signal.SIGTERM)
    records = [json.loads(line) for line in (await server.output()).splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)
    assert any(r["logger"].startswith("uvicorn") for r in records)  # uvicorn's own records too
    connected = next(r for r in records if r["message"].endswith("connected alice"))
    assert connected["identifiers"] == {"current_user": "alice"} and connected["peer"].startswith("127.0.0.1:")
    limit = next(r for r in records if r.get("limit") == "subscriptions")
    assert limit["level"] == "warning" and limit["connection_id"] == connected["connection_id"]
    assert limit["identifiers"] == {"current_user": "alice"}
    assert sid not in json.dumps(records) and connected["connection_id"]


async def test_sigterm_during_100_chat_streams_ends_every_one_cleanly(launch: Launcher, fake_openai: FakeOpenAI) -> None:
    """SIGTERM while 100 users each watch an answer stream in: every client gets its frames in order, then
    server_restart and a close 1000; every upstream stream is closed; the process exits cleanly, no traceback."""
    fake_openai.default = Reply(chunks=[f"t{k} " for k in range(400)], delay=0.05)  # 20 s per answer
    env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": fake_openai.url, "CABLE_LLM_MAX_CONCURRENT": "100"}
    env["CABLE_LLM_MAX_CONCURRENT_PER_ADDRESS"] = "0"  # 100 users from one address, all streaming
    server = await launch(env=env, command=(sys.executable, "-m", "cable_server"))
    users = [f"user{k}" for k in range(100)]

    async def start_answer(user: str) -> CableClient:
        client = await server.client(f"/cable?name={user}")
        await client.subscribe(ident("GptChatChannel", room=user))
        await client.perform(ident("GptChatChannel", room=user), "send_message", user_content="hi", user_id=user)
        assert (await client.recv(10))["message"]["event"] == "start"
        assert (await client.recv(10))["message"]["event"] == "delta"
        return client

    clients = await asyncio.gather(*(start_answer(user) for user in users))
    assert len(fake_openai.requests) == 100
    server.process.send_signal(signal.SIGTERM)

    async def until_restart(client: CableClient) -> int:
        seqs = []
        while (frame := await client.recv(10)).get("type") != "disconnect":
            seqs.append(frame["message"]["seq"])
        assert frame == {"type": "disconnect", "reason": "server_restart", "reconnect": True}
        assert seqs == list(range(2, 2 + len(seqs)))  # in order, none lost, up to the restart
        return await closed_with(client)

    assert await asyncio.gather(*(until_restart(client) for client in clients)) == [1000] * 100
    assert await asyncio.wait_for(server.process.wait(), 20) in (0, -signal.SIGTERM)
    await asyncio.wait_for(asyncio.gather(*(request.ended.wait() for request in fake_openai.requests)), 10)
    assert all(request.closed_early for request in fake_openai.requests)
    output = await server.output()
    assert "Traceback" not in output and " ERROR " not in output, output
    assert output.count("outcome=shutdown") == 100  # each generation ended as a shutdown, none as an error


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_tokens_and_sids_in_request_targets_never_reach_the_log(launch: Launcher, log_format: str) -> None:
    """uvicorn logs every request target; ?token=, &sid= and the like come out as [FILTERED], other
    parameters as they were, in both log formats."""
    server = await launch("tests.fixture_app:create_app", "--log-format", log_format)
    client = await server.client("/cable?user=alice&token=eyJ.SECRET-JWT.sig&sid=SECRET-SID")
    await client.close()
    async with httpx.AsyncClient() as http:
        await http.get(f"{server.origin}/health?access_token=SECRET-HTTP&page=2")
    await asyncio.sleep(0.2)
    server.process.send_signal(signal.SIGTERM)
    output = await server.output()
    assert "SECRET" not in output
    assert "user=alice&token=[FILTERED]&sid=[FILTERED]" in output
    assert "access_token=[FILTERED]&page=2" in output
