"""The README's promises: its two commands and its example channel, run for real."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from cable_server import CableServer, Settings, issue_token
from protocol_tests.client import closed_with, ident
from protocol_tests.differences import DESIGN, VERSION, markdown

from .conftest import ServerFactory

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"^```(\w*)\n(.*?)^```", README, flags=re.S | re.M)


def example_module() -> types.ModuleType:
    """Execute the README's first Python block as a module."""
    source = next(body for language, body in BLOCKS if language == "python")
    module = types.ModuleType("chat")
    exec(compile(source, "README.md", "exec"), module.__dict__)
    return module


def example_cable() -> CableServer:
    """The README example's ``cable``, with short timings for tests."""
    module = example_module()
    cable = module.cable
    assert isinstance(cable, CableServer)
    cable.settings = Settings(ping_interval=0.5, shutdown_timeout=1.0)
    return cable


def test_first_code_block_is_the_two_fresh_machine_commands() -> None:
    """The first block is exactly two lines: run the demo, then run every check."""
    lines = BLOCKS[0][1].splitlines()
    assert len(lines) == 2
    assert lines == ["bash scripts/demo", "bash scripts/check"]
    scripts = Path(__file__).resolve().parent.parent / "scripts"
    assert (scripts / "demo").is_file() and (scripts / "check").is_file()


async def test_example_channel_chats_between_users(serve: ServerFactory) -> None:
    """Two users in one room both hear what one says, signed with the speaker's identity."""
    server = await serve(example_cable())
    room = ident("RoomChannel", room="lobby")
    alice, bob = await server.client("?user=alice"), await server.client("?user=bob")
    for member in (alice, bob):
        await member.subscribe(room)
    await alice.perform(room, "speak", text="hello")
    for member in (alice, bob):
        assert (await member.recv())["message"] == {"user": "alice", "text": "hello"}


async def test_example_rescues_a_missing_field(serve: ServerFactory) -> None:
    """speak without text is answered by the rescue_from handler, and the connection lives on."""
    server = await serve(example_cable())
    room = ident("RoomChannel", room="lobby")
    client = await server.client("?user=alice")
    await client.subscribe(room)
    await client.perform(room, "speak")
    assert (await client.recv())["message"] == {"error": "missing field 'text'"}
    await client.perform(room, "speak", text="still here")
    assert (await client.recv())["message"]["text"] == "still here"


async def test_example_rejects_a_connection_without_user(serve: ServerFactory) -> None:
    """No user cookie or param: unauthorized disconnect, then close."""
    server = await serve(example_cable())
    client = await server.client(welcome=False)
    assert await client.recv_raw() == '{"type":"disconnect","reason":"unauthorized","reconnect":false}'
    assert await closed_with(client) == 1000


def test_compatibility_tables_are_the_generated_ones() -> None:
    """The README's difference tables are exactly what protocol_tests/differences.py renders."""
    for kind in (DESIGN, VERSION):
        assert markdown(kind) in README


async def test_the_testing_example_passes_against_the_example_channel() -> None:
    """The "Testing your channels" block, run against the README's own RoomChannel."""
    source = next(body for language, body in BLOCKS if language == "python" and "CableTester" in body)
    module = types.ModuleType("chat_tests")
    module.__dict__.update(vars(example_module()))
    exec(compile(source, "README.md", "exec"), module.__dict__)
    await module.test_speak_is_broadcast_to_the_room()


async def test_the_token_example_identifies_users_by_their_signed_token(
    serve: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The "signed tokens" block, with the README's RoomChannel: a minted token speaks as its subject; no token is refused."""
    secret = "readme-secret-" + "z" * 50
    monkeypatch.setenv("CABLE_TOKEN_SECRET", secret)
    source = next(body for language, body in BLOCKS if language == "python" and "TokenConnection" in body)
    module = types.ModuleType("chat_tokens")
    module.__dict__.update(vars(example_module()))
    exec(compile(source, "README.md", "exec"), module.__dict__)
    cable = module.cable
    cable.settings = Settings(ping_interval=0.5, shutdown_timeout=1.0)
    server = await serve(cable)
    room = ident("RoomChannel", room="lobby")
    alice = await server.client(f"?token={issue_token(secret, 'alice', expires_in=60)}&user=mallory")
    await alice.subscribe(room)
    await alice.perform(room, "speak", text="signed")
    assert (await alice.recv())["message"] == {"user": "alice", "text": "signed"}
    anonymous = await server.client("?user=mallory", welcome=False)
    assert await anonymous.recv_raw() == '{"type":"disconnect","reason":"unauthorized","reconnect":false}'
    assert await closed_with(anonymous) == 1000
