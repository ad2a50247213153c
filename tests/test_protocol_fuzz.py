"""The sans-I/O core under hostile input (hypothesis): whatever a client sends, ``ServerProtocol``
returns a command or one of its documented ``ProtocolError`` values, never raises, and a valid
command sent after any amount of garbage still decodes to exactly what was sent."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cable_server.errors import BinaryFrame, InvalidCommandData, InvalidIdentifier, MalformedFrame, UnknownCommand
from cable_server.protocol import (
    Command,
    Event,
    History,
    Perform,
    Ping,
    Pong,
    ServerProtocol,
    Subscribe,
    Unsubscribe,
    confirm_frame,
    message_frame,
    reject_frame,
)

from .hostile import command_like, expected_commands, garbage

#: Bounded so the file runs in a few seconds; ``deadline=None`` because shared CI machines stall.
FUZZ = settings(max_examples=300, deadline=None)

#: What ``receive_text`` may hand back for a frame that is not a command (``BinaryFrame`` is for bytes).
TEXT_ERRORS = (MalformedFrame, UnknownCommand, InvalidIdentifier, InvalidCommandData)
COMMANDS = (Subscribe, Unsubscribe, Perform, History, Ping, Pong)

# --- the contract --------------------------------------------------------------------------------


def open_protocol(*, extended: bool = False) -> ServerProtocol:
    protocol = ServerProtocol(extended=extended)
    protocol.accept(sid="sid")
    return protocol


def assert_well_formed(event: Event, *, extended: bool) -> None:
    """The event is one the session knows how to run, and every frame it may answer with encodes."""
    assert isinstance(event, TEXT_ERRORS + COMMANDS), f"undocumented event {event!r}"
    if isinstance(event, TEXT_ERRORS):
        str(event)  # the session logs it
        return
    if isinstance(event, History | Ping | Pong):
        assert extended, f"{type(event).__name__} outside the extended protocol"
    if isinstance(event, Subscribe | Unsubscribe | Perform | History):
        assert isinstance(event.identifier, str)
        for frame in (confirm_frame(event.identifier), reject_frame(event.identifier), message_frame(event.identifier, "1")):
            assert json.loads(frame)["identifier"] == event.identifier
    if isinstance(event, Subscribe):
        assert isinstance(event.params, dict) and isinstance(event.channel, str)
        assert json.loads(event.identifier) == event.params
    if isinstance(event, Perform):
        assert isinstance(event.data, dict)
        assert event.action is None or (isinstance(event.action, str) and event.action)


def receive_one(protocol: ServerProtocol, text: str) -> Event:
    events = protocol.receive_text(text)
    assert len(events) == 1, events
    return events[0]


# --- properties ----------------------------------------------------------------------------------


@pytest.mark.parametrize("extended", [False, True], ids=["v1", "ext"])
@FUZZ
@given(text=garbage)
def test_any_text_frame_is_a_command_or_a_documented_protocol_error(extended: bool, text: str) -> None:
    """Arbitrary text, JSON of any shape, absurd nesting and numbers, broken fields: never an exception."""
    assert_well_formed(receive_one(open_protocol(extended=extended), text), extended=extended)


@FUZZ
@given(text=command_like)
def test_command_shaped_frames_with_wrong_types_in_every_field(text: str) -> None:
    """subscribe/unsubscribe/message with each field missing or of the wrong type: a command or an error, never a crash."""
    assert_well_formed(receive_one(open_protocol(extended=True), text), extended=True)


@FUZZ
@given(data=st.binary(max_size=200))
def test_binary_frames_are_always_a_binary_frame_error(data: bytes) -> None:
    """Any bytes in a binary frame: a BinaryFrame error naming its size, nothing decoded."""
    events = open_protocol().receive_bytes(data)
    assert len(events) == 1 and isinstance(events[0], BinaryFrame)
    assert str(len(data)) in str(events[0])


@FUZZ
@given(identifier=st.text(st.characters(min_codepoint=0x80), min_size=1, max_size=10))
def test_an_identifier_that_cannot_be_written_back_is_refused(identifier: str) -> None:
    """An identifier holding a lone surrogate (a \\ud800 escape) is refused with its frame when
    decoded (no character: no confirmation could carry it back)."""
    identifier = json.dumps({"channel": "EchoChannel", "x": identifier}, ensure_ascii=False)
    event = receive_one(open_protocol(), json.dumps({"command": "subscribe", "identifier": identifier}))
    try:
        identifier.encode()
    except UnicodeEncodeError:
        assert isinstance(event, MalformedFrame)
    else:
        assert event == Subscribe(identifier, json.loads(identifier))


@pytest.mark.parametrize("extended", [False, True], ids=["v1", "ext"])
@FUZZ
@given(
    before=st.lists(st.one_of(garbage, expected_commands()), max_size=6),
    after=st.lists(st.one_of(garbage, expected_commands()), max_size=6),
)
def test_valid_commands_decode_exactly_after_any_garbage(
    extended: bool, before: list[str | tuple[str, Command]], after: list[str | tuple[str, Command]]
) -> None:
    """Garbage never corrupts state: frames buffered while connecting and frames after the welcome
    come out one event per frame, in order, each valid command exactly as sent."""
    protocol = ServerProtocol(extended=extended)
    for item in before:
        assert protocol.receive_text(item if isinstance(item, str) else item[0]) == []
    _, buffered = protocol.accept(sid="sid")
    events = buffered + [event for item in after for event in protocol.receive_text(item if isinstance(item, str) else item[0])]
    assert len(events) == len(before) + len(after)
    for item, event in zip(before + after, events, strict=True):
        if isinstance(item, tuple):
            assert event == item[1]
        assert_well_formed(event, extended=extended)


@FUZZ
@given(frames=st.lists(garbage, max_size=5))
def test_a_closed_protocol_ignores_everything(frames: list[str]) -> None:
    """After close (or reject) every later frame, text or binary, yields nothing."""
    protocol = open_protocol()
    protocol.close()
    for text in frames:
        assert protocol.receive_text(text) == []
        assert protocol.receive_bytes(text.encode("utf-8", "surrogatepass")) == []


@pytest.mark.parametrize("literal", ["9" * 5000, "1e999", "NaN", "-Infinity", "[" * 100_000, '{"a":' * 100_000])
def test_hostile_literals_on_their_own_are_malformed_frames(literal: str) -> None:
    """Numbers past int() limits or float range, NaN, and nesting past the recursion limit: MalformedFrame."""
    assert isinstance(receive_one(open_protocol(), literal), MalformedFrame)
