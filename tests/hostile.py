"""Hypothesis strategies for what a hostile (or broken) client sends: shared by the sans-I/O fuzz
tests and the ones over a real socket."""

from __future__ import annotations

import json

from hypothesis import strategies as st

from cable_server.protocol import Command, Perform, Subscribe, Unsubscribe

__all__ = [
    "any_text",
    "clean_values",
    "command_like",
    "deep_nesting",
    "expected_commands",
    "garbage",
    "json_texts",
    "valid_identifiers",
]

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
