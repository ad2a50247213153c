"""The actioncable-v1-json protocol, sans I/O: subprotocols, commands, frames, the connection state machine."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from cable_server.encoding import dumps
from cable_server.errors import (
    BinaryFrame,
    InvalidCommandData,
    InvalidIdentifier,
    MalformedFrame,
    ProtocolError,
    UnknownCommand,
)
from cable_server.protocol import (
    PROTOCOL_UNSUPPORTED,
    PROTOCOL_V1_EXT_JSON,
    PROTOCOL_V1_JSON,
    SUPPORTED_PROTOCOLS,
    WELCOME_FRAME,
    DisconnectReason,
    Event,
    Perform,
    ServerProtocol,
    State,
    Subscribe,
    Unsubscribe,
    confirm_frame,
    decode_command,
    disconnect_frame,
    message_frame,
    parse_identifier,
    ping_frame,
    reject_frame,
    select_subprotocol,
)

ECHO_R1 = '{"channel":"EchoChannel","room":"r1"}'


def frame(**fields: object) -> str:
    """A client frame as ``JSON.stringify`` would build it."""
    return json.dumps(fields, separators=(",", ":"))


def subscribe(identifier: object) -> str:
    return frame(command="subscribe", identifier=identifier)


def message(identifier: object, data: object) -> str:
    return frame(command="message", identifier=identifier, data=data)


# --- subprotocol -------------------------------------------------------------------------------


def test_server_protocol_list() -> None:
    """The server supports Rails' list, in Rails' order (v1-json, then unsupported), and AnyCable's extension."""
    assert SUPPORTED_PROTOCOLS == ("actioncable-v1-json", "actioncable-unsupported", "actioncable-v1-ext-json")
    assert (PROTOCOL_V1_JSON, PROTOCOL_UNSUPPORTED, PROTOCOL_V1_EXT_JSON) == SUPPORTED_PROTOCOLS


@pytest.mark.parametrize(
    ("offered", "selected"),
    [
        (["actioncable-v1-json", "actioncable-unsupported"], "actioncable-v1-json"),
        ([], None),
        (["foo"], None),
        (["actioncable-unsupported"], "actioncable-unsupported"),
        (["actioncable-unsupported", "actioncable-v1-json"], "actioncable-unsupported"),
        (["actioncable-v1-ext-json", "actioncable-v1-json"], "actioncable-v1-ext-json"),
        (["actioncable-v1-json", "actioncable-unsupported", "custom-token"], "actioncable-v1-json"),
        (["custom-token", "actioncable-v1-json"], "actioncable-v1-json"),
        (["ACTIONCABLE-V1-JSON"], None),
        (("actioncable-v1-json",), "actioncable-v1-json"),
    ],
)
def test_select_subprotocol_table(offered: Sequence[str], selected: str | None) -> None:
    """protocol.md §2.4: the first client-offered protocol the server supports, else None (no header)."""
    assert select_subprotocol(offered) == selected


# --- decode_command: valid commands -------------------------------------------------------------


def test_subscribe_decodes_identifier_params() -> None:
    """subscribe: the identifier string is kept and its JSON object becomes ``params``."""
    command = decode_command(subscribe(ECHO_R1))
    assert command == Subscribe(ECHO_R1, {"channel": "EchoChannel", "room": "r1"})
    assert isinstance(command, Subscribe)
    assert command.channel == "EchoChannel"


@pytest.mark.parametrize(
    "identifier",
    [
        '{"channel":"EchoChannel","room":"k"}',
        '{"room":"k","channel":"EchoChannel"}',
        '{ "channel" : "EchoChannel", "room" : "k" }',
        '{"a":1,"channel":"EchoChannel","room":"any"}',
        '{"channel":"EchoChannel","room":"é\\u00e9😀"}',
        '{"channel":"EchoChannel","room":"<&>"}',
        '\n{"channel":"EchoChannel"}\t',
    ],
)
def test_subscribe_keeps_identifier_verbatim(identifier: str) -> None:
    """The identifier is an opaque string: whitespace, key order, escapes and unicode are never normalized."""
    command = decode_command(subscribe(identifier))
    assert isinstance(command, Subscribe)
    assert command.identifier == identifier
    assert command.params == json.loads(identifier)


def test_subscribe_params_keep_types_and_bignums() -> None:
    """Identifier params decode like any JSON: nested values, unicode and exact bignums."""
    identifier = '{"channel":"Chat","id":12345678901234567890,"tags":["é",null],"opts":{"x":1.5}}'
    command = decode_command(subscribe(identifier))
    assert isinstance(command, Subscribe)
    assert command.params == {"channel": "Chat", "id": 12345678901234567890, "tags": ["é", None], "opts": {"x": 1.5}}
    assert list(command.params) == ["channel", "id", "tags", "opts"]


def test_unsubscribe_keeps_identifier_verbatim() -> None:
    """unsubscribe: only the identifier string, verbatim."""
    identifier = '{ "room" : "k", "channel" : "EchoChannel" }'
    assert decode_command(frame(command="unsubscribe", identifier=identifier)) == Unsubscribe(identifier)


def test_message_decodes_data_including_action() -> None:
    """message: ``data`` (a JSON string) is decoded into an object that still holds ``action``."""
    data = '{"content":"Hi","action":"send_message"}'
    command = decode_command(message(ECHO_R1, data))
    assert isinstance(command, Perform)
    assert command.identifier == ECHO_R1
    assert command.data == {"content": "Hi", "action": "send_message"}
    assert list(command.data) == ["content", "action"]
    assert command.action == "send_message"


def test_message_as_rails_client_sends_it() -> None:
    """The exact frame ``@rails/actioncable`` sends for ``perform`` (protocol.md §1) decodes."""
    text = (
        '{"command":"message","identifier":"{\\"channel\\":\\"ChatChannel\\",\\"room\\":\\"public\\"}",'
        '"data":"{\\"content\\":\\"Hi\\",\\"action\\":\\"send_message\\"}"}'
    )
    command = decode_command(text)
    assert command == Perform('{"channel":"ChatChannel","room":"public"}', {"content": "Hi", "action": "send_message"})


@pytest.mark.parametrize(
    "data",
    [
        '{"raw":true}',
        "{}",
        '{"action":""}',
        '{"action":" \\t\\n\\r\\f\\u000b"}',
        '{"action":"\\u0085\\u00a0\\u1680\\u2000\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"}',
        '{"action":null}',
        '{"action":false}',
        '{"action":[]}',
        '{"action":{}}',
    ],
)
def test_perform_a_blank_action_is_receive(data: str) -> None:
    """A missing or blank action (ActiveSupport's ``blank?``: Unicode whitespace, null, false, [], {}) is ``receive``."""
    command = decode_command(message(ECHO_R1, data))
    assert isinstance(command, Perform)
    assert command.action == "receive"
    assert command.data == json.loads(data)


@pytest.mark.parametrize("action", [0, 5, 1.5, True, ["echo"], {"a": 1}])
def test_perform_an_action_that_is_not_a_string_names_none(action: object) -> None:
    """A number, true, or a non-empty array or object is no action (Rails cannot make a method name of it)."""
    command = decode_command(message(ECHO_R1, json.dumps({"action": action})))
    assert isinstance(command, Perform)
    assert command.action is None


@pytest.mark.parametrize("action", ["\x1c", "\u200b", " echo", "echo "])
def test_perform_a_string_action_that_is_not_blank_is_kept_as_is(action: str) -> None:
    """U+001C (whitespace to Python, not to Ruby), U+200B and padding around a name are not blank."""
    command = decode_command(message(ECHO_R1, json.dumps({"action": action})))
    assert isinstance(command, Perform)
    assert command.action == action


# --- decode_command: malformed frames ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        # case 44: not JSON
        ("{not json", MalformedFrame),
        ("", MalformedFrame),
        ('{"command":"subscribe"', MalformedFrame),
        ('{"command":"subscribe","n":NaN}', MalformedFrame),
        ("[" * 100_000, MalformedFrame),
        # case 45: JSON, but not an object
        ("[1,2]", MalformedFrame),
        ('"hello"', MalformedFrame),
        ("42", MalformedFrame),
        ("null", MalformedFrame),
        # case 46: unknown or missing command
        (frame(command="foo", identifier=ECHO_R1), UnknownCommand),
        (frame(identifier=ECHO_R1), UnknownCommand),
        (frame(command=None, identifier=ECHO_R1), UnknownCommand),
        (frame(command=1, identifier=ECHO_R1), UnknownCommand),
        (frame(command=["subscribe"], identifier=ECHO_R1), UnknownCommand),
        (frame(command="Subscribe", identifier=ECHO_R1), UnknownCommand),
        # case 47: AnyCable commands on a v1 connection
        (frame(command="pong"), UnknownCommand),
        (frame(command="history", identifier=ECHO_R1, history={"since": 1}), UnknownCommand),
        (frame(command="whisper", identifier=ECHO_R1, data={"typing": True}), UnknownCommand),
        # case 21: no identifier; and non-string identifiers (case 23: an object)
        (frame(command="subscribe"), InvalidIdentifier),
        (subscribe(None), InvalidIdentifier),
        (subscribe(42), InvalidIdentifier),
        (subscribe({"channel": "EchoChannel"}), InvalidIdentifier),
        (subscribe(["EchoChannel"]), InvalidIdentifier),
        (frame(command="unsubscribe"), InvalidIdentifier),
        (frame(command="unsubscribe", identifier={"channel": "EchoChannel"}), InvalidIdentifier),
        (frame(command="message", data='{"action":"echo"}'), InvalidIdentifier),
        (frame(command="message", identifier={"channel": "EchoChannel"}, data="{}"), InvalidIdentifier),
        # case 22: identifier not JSON
        (subscribe("EchoChannel"), InvalidIdentifier),
        (subscribe(""), InvalidIdentifier),
        (subscribe('{"channel":"EchoChannel"'), InvalidIdentifier),
        (subscribe('{"channel":"EchoChannel","n":NaN}'), InvalidIdentifier),
        # identifier JSON but not an object
        (subscribe('"EchoChannel"'), InvalidIdentifier),
        (subscribe('["EchoChannel"]'), InvalidIdentifier),
        (subscribe("null"), InvalidIdentifier),
        # case 24: no channel key; channel not a string
        (subscribe('{"room":"x"}'), InvalidIdentifier),
        (subscribe('{"channel":null}'), InvalidIdentifier),
        (subscribe('{"channel":1}'), InvalidIdentifier),
        (subscribe('{"channel":["EchoChannel"]}'), InvalidIdentifier),
        (subscribe('{"channel":{"name":"EchoChannel"}}'), InvalidIdentifier),
        # case 35: data missing, an object, not a JSON object string, invalid JSON
        (frame(command="message", identifier=ECHO_R1), InvalidCommandData),
        (message(ECHO_R1, None), InvalidCommandData),
        (message(ECHO_R1, {"action": "echo"}), InvalidCommandData),
        (message(ECHO_R1, 42), InvalidCommandData),
        (message(ECHO_R1, '"str"'), InvalidCommandData),
        (message(ECHO_R1, "[1,2]"), InvalidCommandData),
        (message(ECHO_R1, "null"), InvalidCommandData),
        (message(ECHO_R1, "42"), InvalidCommandData),
        (message(ECHO_R1, "{not json"), InvalidCommandData),
        (message(ECHO_R1, ""), InvalidCommandData),
        (message(ECHO_R1, '{"x":NaN}'), InvalidCommandData),
    ],
)
def test_malformed_frames_raise_specific_protocol_error(text: str, error: type[ProtocolError]) -> None:
    """Each malformed shape of protocol.md §13 (cases 21-24, 35, 44-47) raises its own ProtocolError subclass."""
    with pytest.raises(error):
        decode_command(text)


def test_protocol_errors_share_a_base() -> None:
    """Every frame-level error is a ProtocolError, so the caller can log and ignore them alike."""
    for error in (MalformedFrame, BinaryFrame, UnknownCommand, InvalidIdentifier, InvalidCommandData):
        assert issubclass(error, ProtocolError)


def test_unsubscribe_does_not_parse_identifier() -> None:
    """unsubscribe looks the identifier up as a string: one that is not JSON is still a valid command."""
    assert decode_command(frame(command="unsubscribe", identifier="EchoChannel")) == Unsubscribe("EchoChannel")


def test_parse_identifier_returns_params() -> None:
    """parse_identifier decodes a JSON-object identifier with a string channel into its params."""
    assert parse_identifier(ECHO_R1) == {"channel": "EchoChannel", "room": "r1"}
    with pytest.raises(InvalidIdentifier):
        parse_identifier({"channel": "EchoChannel"})


# --- frames ------------------------------------------------------------------------------------------


def test_welcome_frame() -> None:
    """welcome: exactly ``{"type":"welcome"}`` (18 bytes)."""
    assert WELCOME_FRAME == '{"type":"welcome"}'
    assert len(WELCOME_FRAME.encode()) == 18


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        (1795528531, '{"type":"ping","message":1795528531}'),
        (0, '{"type":"ping","message":0}'),
        (1795528531.999, '{"type":"ping","message":1795528531}'),
    ],
)
def test_ping_frame_integer_seconds(timestamp: float, expected: str) -> None:
    """ping: ``message`` is integer Unix seconds (``Time.now.to_i`` truncates)."""
    assert ping_frame(timestamp) == expected  # type: ignore[arg-type]


def test_confirm_frame() -> None:
    """confirm_subscription: identifier as a JSON string first, then the type (protocol.md §1)."""
    assert confirm_frame(ECHO_R1) == (
        '{"identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"r1\\"}","type":"confirm_subscription"}'
    )


def test_reject_frame() -> None:
    """reject_subscription: identifier as a JSON string first, then the type (protocol.md §1)."""
    assert reject_frame('{"channel":"RejectChannel","room":"q"}') == (
        '{"identifier":"{\\"channel\\":\\"RejectChannel\\",\\"room\\":\\"q\\"}","type":"reject_subscription"}'
    )


@pytest.mark.parametrize(
    ("identifier", "encoded"),
    [
        (
            '{"channel":"EchoChannel","room":"<b>&"}',
            '"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"\\u003cb\\u003e\\u0026\\"}"',
        ),
        ('{ "channel" : "EchoChannel", "room" : "k" }', '"{ \\"channel\\" : \\"EchoChannel\\", \\"room\\" : \\"k\\" }"'),
        ('{"channel":"EchoChannel","room":"é\u2028"}', '"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"é\\u2028\\"}"'),
        (
            '{"channel":"EchoChannel","room":"a\\"b\\\\c/"}',
            '"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"a\\\\\\"b\\\\\\\\c/\\"}"',
        ),
    ],
)
def test_identifier_is_echoed_as_escaped_json_string(identifier: str, encoded: str) -> None:
    """Frames echo the identifier verbatim as an ActiveSupport-escaped JSON string (``<>&``, U+2028, quotes)."""
    assert confirm_frame(identifier) == f'{{"identifier":{encoded},"type":"confirm_subscription"}}'
    assert reject_frame(identifier) == f'{{"identifier":{encoded},"type":"reject_subscription"}}'
    assert message_frame(identifier, "1") == f'{{"identifier":{encoded},"message":1}}'


@pytest.mark.parametrize(
    ("payload", "expected_message"),
    [
        ({"user": "alice"}, '{"user":"alice"}'),
        ("just a string", '"just a string"'),
        ([1, "two", {"three": 3}], '[1,"two",{"three":3}]'),
        (42, "42"),
        (None, "null"),
    ],
)
def test_message_frame_variants(payload: object, expected_message: str) -> None:
    """Data frames carry any JSON value after the identifier (protocol.md §1 and case 37)."""
    expected = f'{{"identifier":"{{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"r1\\"}}","message":{expected_message}}}'
    assert message_frame(ECHO_R1, dumps(payload)) == expected


def test_message_frame_embeds_encoded_message_as_is() -> None:
    """message_frame inserts the already-encoded message without re-encoding it (case 53 bytes)."""
    encoded = dumps({"f": 1e20, "g": 0.1, "h": -0.0, "u": "\u2028\u2029<>&'\"/"})
    assert message_frame(ECHO_R1, encoded) == (
        '{"identifier":"{\\"channel\\":\\"EchoChannel\\",\\"room\\":\\"r1\\"}",'
        '"message":{"f":1.0e+20,"g":0.1,"h":-0.0,"u":"\\u2028\\u2029\\u003c\\u003e\\u0026\'\\"/"}}'
    )


@pytest.mark.parametrize(
    ("reason", "reconnect", "expected"),
    [
        (DisconnectReason.UNAUTHORIZED, False, '{"type":"disconnect","reason":"unauthorized","reconnect":false}'),
        (DisconnectReason.SERVER_RESTART, True, '{"type":"disconnect","reason":"server_restart","reconnect":true}'),
        (DisconnectReason.REMOTE, True, '{"type":"disconnect","reason":"remote","reconnect":true}'),
        (DisconnectReason.REMOTE, False, '{"type":"disconnect","reason":"remote","reconnect":false}'),
        (DisconnectReason.INVALID_REQUEST, True, '{"type":"disconnect","reason":"invalid_request","reconnect":true}'),
        (DisconnectReason.TOO_SLOW, True, '{"type":"disconnect","reason":"too_slow","reconnect":true}'),
        (None, True, '{"type":"disconnect","reason":null,"reconnect":true}'),
        (None, False, '{"type":"disconnect","reason":null,"reconnect":false}'),
    ],
)
def test_disconnect_frames(reason: DisconnectReason | None, reconnect: bool, expected: str) -> None:
    """disconnect: type, reason (``null`` when None), then ``reconnect`` as a JSON boolean (protocol.md §1)."""
    assert disconnect_frame(reason, reconnect=reconnect) == expected


def test_disconnect_reasons_are_rails_strings() -> None:
    """The reason values are Rails' ``INTERNAL[:disconnect_reasons]`` strings (plus AnyCable's too_slow)."""
    assert {reason.value for reason in DisconnectReason} == {
        "unauthorized",
        "invalid_request",
        "server_restart",
        "remote",
        "too_slow",
    }


# --- ServerProtocol state machine ----------------------------------------------------------------------

SUB_TEXT = subscribe(ECHO_R1)
MSG_TEXT = message(ECHO_R1, '{"x":1,"action":"echo"}')
UNSUB_TEXT = frame(command="unsubscribe", identifier=ECHO_R1)


def test_starts_connecting() -> None:
    """A new connection is CONNECTING: authentication has not finished, no welcome yet."""
    assert ServerProtocol().state is State.CONNECTING


def test_commands_are_buffered_until_accept() -> None:
    """While CONNECTING, commands return nothing; accept() gives the welcome, then them in order."""
    proto = ServerProtocol()
    assert proto.receive_text(SUB_TEXT) == []
    assert proto.receive_text(MSG_TEXT) == []
    assert proto.receive_text(UNSUB_TEXT) == []
    welcome, buffered = proto.accept()
    assert welcome == '{"type":"welcome"}'
    assert buffered == [
        Subscribe(ECHO_R1, {"channel": "EchoChannel", "room": "r1"}),
        Perform(ECHO_R1, {"x": 1, "action": "echo"}),
        Unsubscribe(ECHO_R1),
    ]
    assert proto.state is State.OPEN


def test_protocol_errors_are_buffered_in_order() -> None:
    """Malformed frames and binary frames received while CONNECTING are buffered as errors, in order."""
    proto = ServerProtocol()
    assert proto.receive_text("{not json") == []
    assert proto.receive_text(SUB_TEXT) == []
    assert proto.receive_bytes(SUB_TEXT.encode()) == []
    assert proto.receive_text(frame(command="pong")) == []
    _, buffered = proto.accept()
    kinds = [type(event) for event in buffered]
    assert kinds == [MalformedFrame, Subscribe, BinaryFrame, UnknownCommand]


def test_accept_with_nothing_buffered() -> None:
    """accept() with no buffered frames returns the welcome and an empty list."""
    assert ServerProtocol().accept() == (WELCOME_FRAME, [])


def test_after_accept_commands_return_immediately() -> None:
    """Once OPEN, each frame returns its command (or its error) at once, and nothing stays buffered."""
    proto = ServerProtocol()
    proto.accept()
    assert proto.receive_text(SUB_TEXT) == [Subscribe(ECHO_R1, {"channel": "EchoChannel", "room": "r1"})]
    assert proto.receive_text(MSG_TEXT) == [Perform(ECHO_R1, {"x": 1, "action": "echo"})]
    events: list[Event] = proto.receive_text('{"command":"subscribe"}')
    assert len(events) == 1
    assert isinstance(events[0], InvalidIdentifier)


def test_protocol_errors_are_returned_not_raised() -> None:
    """receive_text never raises for a bad frame: the error is returned as a value."""
    proto = ServerProtocol()
    proto.accept()
    for text in ("{not json", "[1,2]", frame(command="foo"), subscribe("EchoChannel"), message(ECHO_R1, {"a": 1})):
        [event] = proto.receive_text(text)
        assert isinstance(event, ProtocolError)


def test_binary_frames_become_binary_frame_errors() -> None:
    """A binary frame, even holding a valid subscribe, is a BinaryFrame error, never a command (case 48)."""
    proto = ServerProtocol()
    proto.accept()
    [event] = proto.receive_bytes(SUB_TEXT.encode())
    assert isinstance(event, BinaryFrame)


def test_reject_returns_unauthorized_frame_and_ignores_everything_after() -> None:
    """reject(): the unauthorized disconnect frame; buffered and later frames are all dropped."""
    proto = ServerProtocol()
    proto.receive_text(SUB_TEXT)
    assert proto.reject() == '{"type":"disconnect","reason":"unauthorized","reconnect":false}'
    assert proto.state is State.CLOSED
    assert proto.receive_text(SUB_TEXT) == []
    assert proto.receive_text("{not json") == []
    assert proto.receive_bytes(b"\x00") == []


def test_accept_after_reject_raises() -> None:
    """A rejected connection can never be accepted (no welcome after an unauthorized disconnect)."""
    proto = ServerProtocol()
    proto.reject()
    with pytest.raises(RuntimeError):
        proto.accept()


def test_accept_twice_raises() -> None:
    """accept() twice is a programming error: RuntimeError, so the welcome is never sent twice."""
    proto = ServerProtocol()
    proto.accept()
    with pytest.raises(RuntimeError):
        proto.accept()


def test_close_ignores_everything_after() -> None:
    """After close(), every later text or binary frame is ignored."""
    proto = ServerProtocol()
    proto.accept()
    proto.close()
    assert proto.state is State.CLOSED
    assert proto.receive_text(SUB_TEXT) == []
    assert proto.receive_bytes(SUB_TEXT.encode()) == []
