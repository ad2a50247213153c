"""Hostile clients over a real socket: one client sends garbage while another stays subscribed.

The hostile client gets Rails' answers (nothing, and a log line naming the reason, for a frame
that is not a command; close 1007 for a text frame that is not UTF-8; close 1009 for a frame
over ``max_frame_bytes``), the subscribed client receives every broadcast, and the server goes
on accepting connections.
"""

from __future__ import annotations

import itertools
import json
import logging
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from protocol_tests.client import CableClient, ident

from .conftest import RunningServer, ServerFactory
from .hostile import expected_commands, garbage

HOSTILE = ident("EchoChannel", room="hostile")
WATCHED = ident("EchoChannel", room="watched")


def command(**fields: Any) -> str:
    return json.dumps(fields)


#: (what it is, the frame, the reason the server logs); each gets no answer at all.
IGNORED: list[tuple[str, str | bytes, str]] = [
    ("not JSON", "{not json", "MalformedFrame"),
    ("JSON that is not an object", '[1,"two"]', "MalformedFrame"),
    ("100k unclosed brackets", "[" * 100_000, "MalformedFrame"),
    ("objects nested 5000 deep", '{"a":' * 5000 + "1" + "}" * 5000, "MalformedFrame"),
    ("a number past Python's int() limit", "9" * 5000, "MalformedFrame"),
    ("empty frame", "", "MalformedFrame"),
    ("command of the wrong type", command(command=["subscribe"], identifier=HOSTILE), "UnknownCommand"),
    ("no command", command(identifier=HOSTILE), "UnknownCommand"),
    ("identifier of the wrong type", command(command="subscribe", identifier={"channel": "EchoChannel"}), "InvalidIdentifier"),
    ("identifier that is not JSON", command(command="subscribe", identifier="EchoChannel"), "InvalidIdentifier"),
    ("identifier that is a JSON array", command(command="subscribe", identifier='["EchoChannel"]'), "InvalidIdentifier"),
    ("identifier whose channel is a number", command(command="subscribe", identifier='{"channel":1}'), "InvalidIdentifier"),
    ("identifier nested 100k deep", command(command="subscribe", identifier="[" * 100_000), "InvalidIdentifier"),
    ("identifier with NaN", command(command="subscribe", identifier='{"channel":"EchoChannel","n":NaN}'), "InvalidIdentifier"),
    (
        "identifier holding a lone surrogate",
        '{"command":"subscribe","identifier":"{\\"channel\\":\\"EchoChannel\\",\\"x\\":\\"\\ud800\\"}"}',
        "MalformedFrame",  # no character: refused with the frame (it could never be encoded again)
    ),
    (
        "data that is an object, not a string",
        command(command="message", identifier=HOSTILE, data={"action": "echo"}),
        "InvalidCommandData",
    ),
    ("data that is not JSON", command(command="message", identifier=HOSTILE, data="echo"), "InvalidCommandData"),
    (
        "data nested 500 deep (Ruby's max_nesting is 100)",
        command(command="message", identifier=HOSTILE, data='{"action":"echo","x":' + "[" * 500 + "]" * 500 + "}"),
        "InvalidCommandData",
    ),
    (
        "an identifier nested 101 deep",
        command(command="subscribe", identifier='{"channel":"EchoChannel","x":' + "[" * 100 + "]" * 100 + "}"),
        "InvalidIdentifier",
    ),
    ("data that is a JSON array", command(command="message", identifier=HOSTILE, data='["echo"]'), "InvalidCommandData"),
    ("data nested 100k deep", command(command="message", identifier=HOSTILE, data="[" * 100_000), "InvalidCommandData"),
    (
        "data with a number past Python's int() limit",
        command(command="message", identifier=HOSTILE, data='{"action":"echo","n":' + "9" * 5000 + "}"),
        "InvalidCommandData",
    ),
    (
        "message to an identifier not subscribed",
        command(command="message", identifier=WATCHED, data='{"action":"echo"}'),
        "UnknownSubscription",
    ),
    (
        "an action the channel does not have",
        command(command="message", identifier=HOSTILE, data='{"action":"nope"}'),
        "UnknownAction",
    ),
    ("a private method as action", command(command="message", identifier=HOSTILE, data='{"action":"_private"}'), "UnknownAction"),
    ("binary frame holding a valid subscribe", command(command="subscribe", identifier=WATCHED).encode(), "BinaryFrame"),
    ("binary garbage", bytes(range(256)), "BinaryFrame"),
]


async def next_is_echo(client: CableClient, marker: str) -> None:
    """Echo ``marker`` and check it is the very next frame: whatever was sent before got no answer.

    Commands of one connection run in order, so once the echo is back the earlier frame was handled.
    """
    await client.perform(HOSTILE, "echo", marker=marker)
    assert await client.recv() == {"identifier": HOSTILE, "message": {"marker": marker, "action": "echo"}}, marker


async def broadcast_reaches(server: RunningServer, watcher: CableClient, n: int) -> None:
    await server.cable.broadcast("echo_watched", {"n": n})
    assert await watcher.recv() == {"identifier": WATCHED, "message": {"n": n}}


async def closed_with_code(client: CableClient, timeout: float = 3.0) -> tuple[list[Any], int]:
    """Read until the server closes the socket: the frames that came first, and the close code."""
    frames: list[Any] = []
    try:
        while True:
            frames.append(await client.recv(timeout))
    except (ConnectionClosed, TimeoutError) as exc:
        close = client.ws.protocol.close_rcvd
        assert close is not None, f"socket not closed by the server: {exc!r}"
        return frames, close.code


async def test_a_batch_of_hostile_frames_is_ignored_while_another_client_gets_every_broadcast(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Each hostile frame gets no answer and one log line with its reason (no traceback); the
    invalid-UTF-8 and the oversized frame close only their own socket (1007, 1009); a second
    client receives every broadcast throughout; and new connections are still welcomed."""
    caplog.set_level(logging.INFO, logger="cable_server")
    watcher = await server.client()
    await watcher.subscribe(WATCHED)
    hostile = await server.client()
    await hostile.subscribe(HOSTILE)
    for n, (name, frame, reason) in enumerate(IGNORED):
        caplog.clear()
        await hostile.ws.send(frame)
        await next_is_echo(hostile, name)
        ignored = [record.getMessage() for record in caplog.records if "ignored command" in record.getMessage()]
        assert len(ignored) == 1 and f"ignored command: {reason}:" in ignored[0], (name, ignored)
        assert not [record for record in caplog.records if record.levelno >= logging.ERROR], name
        await broadcast_reaches(server, watcher, n)

    await hostile.ws.send(b'{"command":"subscribe","identifier":"\xff\xfe"}', text=True)
    assert (await closed_with_code(hostile))[1] == 1007  # as websocket-driver does for Rails
    await broadcast_reaches(server, watcher, len(IGNORED))

    oversized = await server.client()
    await oversized.send(command(command="message", identifier=HOSTILE, data="x" * server.cable.settings.max_frame_bytes))
    assert (await closed_with_code(oversized))[1] == 1009
    await broadcast_reaches(server, watcher, len(IGNORED) + 1)

    newcomer = await server.client()
    await newcomer.subscribe(HOSTILE)
    await next_is_echo(newcomer, "welcome after the storm")


async def test_extreme_numbers_in_data_reach_the_action_as_rails_would_send_them_back(server: RunningServer) -> None:
    """Integers past 64 bits stay exact, 1e999 becomes null (Infinity), 1e-400 becomes 0.0: Ruby's answers."""
    client = await server.client()
    await client.subscribe(HOSTILE)
    big = "9" * 4000
    await client.send(
        command(command="message", identifier=HOSTILE, data=f'{{"action":"echo","big":{big},"inf":1e999,"tiny":1e-400}}')
    )
    raw = await client.recv_raw()
    assert raw == f'{{"identifier":{json.dumps(HOSTILE)},"message":{{"action":"echo","big":{big},"inf":null,"tiny":0.0}}}}'


# --- the same, with frames hypothesis makes up -----------------------------------------------------

#: Small, so that nested garbage sometimes crosses it and the 1009 path is exercised too.
FUZZ_MAX_FRAME = 64 * 1024
_broadcasts = itertools.count(1000)
valid_frames = expected_commands().map(lambda pair: pair[0])
oversized_frames = st.integers(FUZZ_MAX_FRAME + 1, 2 * FUZZ_MAX_FRAME).flatmap(
    lambda size: st.sampled_from(["[" * size, "x" * size, b"\x00" * size])
)
_examples = itertools.count()


def expected_close(frame: str | bytes) -> int | None:
    """The close code a frame must cause: 1009 over the size limit, 1007 for text that is not UTF-8."""
    raw = frame if isinstance(frame, bytes) else frame.encode("utf-8", "surrogatepass")
    if len(raw) > FUZZ_MAX_FRAME:
        return 1009
    try:
        raw.decode() if isinstance(frame, str) else None
    except UnicodeDecodeError:
        return 1007
    return None


@pytest.fixture
async def fuzz_server(serve: ServerFactory) -> RunningServer:
    return await serve(max_frame_bytes=FUZZ_MAX_FRAME)


@pytest.fixture
async def watcher(fuzz_server: RunningServer) -> CableClient:
    client = await fuzz_server.client()
    await client.subscribe(WATCHED)
    return client


# One server and one watcher face every example (that is the point), hence the fixture health check.
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    frames=st.lists(garbage | valid_frames | st.binary(max_size=300), min_size=1, max_size=6),
    last=st.none() | oversized_frames,
)
async def test_made_up_hostile_frames_never_hurt_the_server_or_a_bystander(
    fuzz_server: RunningServer, watcher: CableClient, frames: list[str | bytes], last: str | bytes | None
) -> None:
    """Random frames (garbage, valid commands, binary, maybe an oversized one last) from a fresh
    client: no disconnect frame; closed with 1007/1009 exactly when a frame is not UTF-8 or too big,
    else still usable; the watcher receives the broadcast after each batch."""
    hostile = await fuzz_server.client()
    close_code = None
    for frame in frames if last is None else [*frames, last]:
        if isinstance(frame, bytes):
            await hostile.ws.send(frame)
        else:
            await hostile.ws.send(frame.encode("utf-8", "surrogatepass"), text=True)
        close_code = expected_close(frame)
        if close_code is not None:
            break
    if close_code is not None:
        answers, code = await closed_with_code(hostile)
        assert code == close_code
    else:
        alive = ident("EchoChannel", room=f"alive-{next(_examples)}")
        await hostile.send(command(command="subscribe", identifier=alive))
        answers = []
        while (answer := await hostile.recv()) != {"identifier": alive, "type": "confirm_subscription"}:
            answers.append(answer)
        await hostile.close()
    assert not [answer for answer in answers if isinstance(answer, dict) and answer.get("type") == "disconnect"]
    await broadcast_reaches(fuzz_server, watcher, next(_broadcasts))


async def test_what_a_client_chooses_reaches_the_log_short_and_on_one_line(
    serve: ServerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """900 kB identifiers, channel names, actions and commands, and a user id with a newline and a NUL:
    every log line stays under 1,000 characters, with control characters escaped."""
    caplog.set_level(logging.DEBUG, logger="cable_server")
    server = await serve()  # the fixture app: identified by ?user=, as the client chooses
    big = "x" * 900_000
    client = await server.client("?user=a%0AFORGED%20CRITICAL%00")
    await client.send(command(command="message", identifier=ident("EchoChannel", room=big), data="{}"))
    await client.send(command(command="subscribe", identifier=ident(big)))
    assert (await client.recv())["type"] == "reject_subscription"
    await client.send(command(command=big, identifier=HOSTILE))
    await client.send(command(command="unsubscribe", identifier=ident("EchoChannel", room=big)))
    await client.subscribe(HOSTILE)
    await client.perform(HOSTILE, big)
    await client.expect_silence(0.3)
    lines = [record.getMessage() for record in caplog.records if record.name.startswith("cable_server")]
    assert len(lines) >= 6
    assert all(len(line) < 1000 and "\n" not in line and "\x00" not in line for line in lines), max(lines, key=len)[:300]
    assert any("a\\x0aFORGED CRITICAL\\x00" in line for line in lines)
