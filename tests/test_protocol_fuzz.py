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

#: Bounded so the file runs in a few seconds; ``deadline=None`` because shared CI machines stall.
FUZZ = settings(max_examples=300, deadline=None)

#: What ``receive_text`` may hand back for a frame that is not a command (``BinaryFrame`` is for bytes).
TEXT_ERRORS = (MalformedFrame, UnknownCommand, InvalidIdentifier, InvalidCommandData)
COMMANDS = (Subscribe, Unsubscribe, Perform, History, Ping, Pong)

# --- strategies ----------------------------------------------------------------------------------

#: Any code point, lone surrogates included (a ``\ud800`` escape in JSON decodes to one).
any_text = st.text(st.characters(), max_size=20)
#: Text a well-behaved client sends (JSON.stringify of a JavaScript string with no lone surrogate).
clean_text = st.text(max_size=20)

number_literals = st.one_of(
    st.integers().map(str),
    st.integers(min_value=19, max_value=6000).map(lambda digits: "9" * digits),  # past int64, past int() limits
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["1e999", "-1e999", "1E-400", "-0", "0.1e1", "NaN", "Infinity", "-Infinity", "01", "1.", ".5", "0x10"]),
)
scalar_json = st.one_of(number_literals, st.sampled_from(["null", "true", "false"]), any_text.map(json.dumps))


def _array(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def _object(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"


#: JSON texts of every shape, written by hand so that literals json.dumps refuses (huge, NaN) appear.
json_texts = st.recursive(
    scalar_json,
    lambda inner: st.lists(inner, max_size=4).map(_array) | st.lists(st.tuples(any_text, inner), max_size=4).map(_object),
    max_leaves=12,
)
deep_nesting = st.one_of(
    st.integers(min_value=1, max_value=100_000).map(lambda depth: "[" * depth),
    st.integers(min_value=1, max_value=3000).map(lambda depth: "[" * depth + "]" * depth),
    st.integers(min_value=1, max_value=3000).map(lambda depth: '{"a":' * depth + "1" + "}" * depth),
)
channel_names = st.sampled_from(["EchoChannel", "ChatChannel", ""]) | clean_text
#: JSON values a client can legitimately put in an identifier or in data (no NaN: JSON has none).
clean_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | clean_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(clean_text, inner, max_size=3),
    max_leaves=8,
)
valid_identifiers = st.builds(
    lambda channel, params: json.dumps({"channel": channel, **params}, ensure_ascii=False),
    channel_names,
    st.dictionaries(clean_text.filter(lambda key: key != "channel"), clean_values, max_size=3),
)
#: The ``identifier`` field: wrong JSON types, strings that are not JSON, JSON of the wrong type, valid ones.
identifier_fields = st.one_of(
    json_texts,
    any_text.map(json.dumps),
    json_texts.map(json.dumps),
    st.builds(lambda channel: json.dumps(json.dumps({"channel": None}).replace("null", channel)), json_texts),
    valid_identifiers.map(json.dumps),
    any_text.map(lambda value: json.dumps(json.dumps({"channel": "EchoChannel", "x": value}, ensure_ascii=False))),
    deep_nesting.map(json.dumps),
)
#: The ``data`` field of a message: anything, strings of anything, JSON objects with odd actions.
data_fields = st.one_of(
    json_texts,
    any_text.map(json.dumps),
    json_texts.map(json.dumps),
    st.dictionaries(st.just("action") | clean_text, clean_values, max_size=3).map(lambda data: json.dumps(json.dumps(data))),
    deep_nesting.map(json.dumps),
)
command_fields = st.sampled_from(["subscribe", "unsubscribe", "message", "history", "ping", "pong"]).map(json.dumps) | json_texts
#: Frames shaped like commands, every field possibly missing or of the wrong type.
command_like = st.builds(
    lambda fields: _object([(name, value) for name, value in fields.items() if value is not None]),
    st.fixed_dictionaries(
        {},
        optional={
            "command": command_fields,
            "identifier": identifier_fields,
            "data": data_fields,
            "history": json_texts,
        },
    ),
)
#: Bytes that are not UTF-8, as a lenient decoder would pass them on.
undecodable = st.binary(min_size=1, max_size=40).map(lambda raw: (raw + b"\xff").decode("utf-8", "surrogateescape"))
garbage = st.one_of(st.text(st.characters()), json_texts, deep_nesting, command_like, undecodable)


def expected_commands() -> st.SearchStrategy[tuple[str, Command]]:
    """Valid frames a real client sends, each with the command it must decode to."""
    subscribe = valid_identifiers.map(
        lambda identifier: (
            json.dumps({"command": "subscribe", "identifier": identifier}),
            Subscribe(identifier, json.loads(identifier)),
        )
    )
    unsubscribe = valid_identifiers.map(
        lambda identifier: (json.dumps({"command": "unsubscribe", "identifier": identifier}), Unsubscribe(identifier))
    )
    message = st.builds(
        lambda identifier, data: (
            json.dumps({"command": "message", "identifier": identifier, "data": json.dumps(data)}),
            Perform(identifier, data),
        ),
        valid_identifiers,
        st.dictionaries(st.just("action") | clean_text, clean_values, max_size=3),
    )
    return st.one_of(subscribe, unsubscribe, message)


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
def test_an_identifier_that_cannot_be_written_back_is_invalid(identifier: str) -> None:
    """An identifier holding a lone surrogate (a \\ud800 escape) is refused when decoded, since no confirmation could carry it."""
    identifier = json.dumps({"channel": "EchoChannel", "x": identifier}, ensure_ascii=False)
    event = receive_one(open_protocol(), json.dumps({"command": "subscribe", "identifier": identifier}))
    try:
        identifier.encode()
    except UnicodeEncodeError:
        assert isinstance(event, InvalidIdentifier)
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
