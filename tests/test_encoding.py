"""ActiveSupport::JSON, byte for byte (protocol.md §5), and JSON read the way Ruby reads it."""

from __future__ import annotations

import math
from collections import OrderedDict, defaultdict
from typing import Any

import pytest

from cable_server.encoding import DecodeError, EncodeError, dumps, dumps_bytes, loads, ruby_float

# --- layout ----------------------------------------------------------------------------------


def test_output_is_compact() -> None:
    """No whitespace between tokens: ``,`` and ``:`` stand alone."""
    assert dumps({"a": [1, 2, {"b": None}], "c": True}) == '{"a":[1,2,{"b":null}],"c":true}'


def test_keys_keep_insertion_order() -> None:
    """Hash keys come out in insertion order, never sorted."""
    assert dumps({"type": "disconnect", "reason": "remote", "reconnect": True, "a": 1}) == (
        '{"type":"disconnect","reason":"remote","reconnect":true,"a":1}'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-7, "-7"),
        ("", '""'),
        ([], "[]"),
        ({}, "{}"),
        ((1, "two", {"three": 3}), '[1,"two",{"three":3}]'),
        ([1, "two", {"three": 3}], '[1,"two",{"three":3}]'),
    ],
)
def test_scalars_and_containers(value: Any, expected: str) -> None:
    """JSON literals, numbers, strings, arrays (lists and tuples) and objects encode as in Ruby."""
    assert dumps(value) == expected


def test_non_string_keys_become_strings() -> None:
    """Integer keys are written as their decimal strings, as Ruby's ``Hash#to_json`` does."""
    assert dumps({1: "a", 2: "b"}) == '{"1":"a","2":"b"}'


def test_dumps_bytes_is_utf8_of_dumps() -> None:
    """``dumps_bytes`` is exactly the UTF-8 encoding of ``dumps``."""
    value = {"msg": "<é> & \u2028 😀", "f": 1e20}
    assert dumps_bytes(value) == dumps(value).encode("utf-8")


# --- strings -----------------------------------------------------------------------------------


def test_non_ascii_is_raw_utf8() -> None:
    """Non-ASCII characters, including astral ones, are emitted as raw UTF-8, not ``\\uXXXX``."""
    assert dumps("é日本😀") == '"é日本😀"'
    assert dumps_bytes("é") == b'"\xc3\xa9"'


@pytest.mark.parametrize(
    ("char", "escaped"),
    [("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")],
)
def test_html_entities_and_js_separators_are_escaped(char: str, escaped: str) -> None:
    """``<``, ``>``, ``&``, U+2028 and U+2029 become lower-case ``\\uXXXX`` escapes."""
    assert dumps(f"a{char}b") == f'"a{escaped}b"'


def test_escaping_applies_to_keys_too() -> None:
    """HTML-entity escaping also covers object keys."""
    assert dumps({"<k>": "&"}) == '{"\\u003ck\\u003e":"\\u0026"}'


def test_slash_and_quote_and_backslash() -> None:
    """``/`` is not escaped; ``"`` and ``\\`` get their short escapes; ``'`` stays raw."""
    assert dumps("a/b\"c\\d'e") == '"a/b\\"c\\\\d\'e"'


@pytest.mark.parametrize(
    ("code", "escaped"),
    [
        (0x00, "\\u0000"),
        (0x01, "\\u0001"),
        (0x07, "\\u0007"),
        (0x08, "\\b"),
        (0x09, "\\t"),
        (0x0A, "\\n"),
        (0x0B, "\\u000b"),
        (0x0C, "\\f"),
        (0x0D, "\\r"),
        (0x0E, "\\u000e"),
        (0x1A, "\\u001a"),
        (0x1B, "\\u001b"),
        (0x1F, "\\u001f"),
    ],
)
def test_control_characters_as_ruby_escapes_them(code: int, escaped: str) -> None:
    """C0 controls: ``\\b \\f \\n \\r \\t`` short, the rest ``\\u00xx`` with lower-case hex (Ruby's generator)."""
    assert dumps(f"x{chr(code)}y") == f'"x{escaped}y"'


def test_every_control_character_at_once() -> None:
    """All 32 C0 controls in one string come out exactly as Ruby's JSON generator writes them."""
    text = "".join(chr(code) for code in range(0x20))
    expected = (
        '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f'
        '\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f"'
    )
    assert dumps(text) == expected


def test_del_is_raw() -> None:
    """DEL (0x7F) is not a JSON control character and is emitted raw."""
    assert dumps_bytes("a\x7fb") == b'"a\x7fb"'


def test_lone_surrogate_raises_encode_error() -> None:
    """A string that has no UTF-8 form (a lone surrogate) raises EncodeError, not a crash elsewhere."""
    with pytest.raises(EncodeError):
        dumps("\ud800")


# --- numbers ---------------------------------------------------------------------------------

FLOAT_TABLE = [
    (1e15, "1.0e+15"),
    (1e16, "1.0e+16"),
    (1e20, "1.0e+20"),
    (1e-05, "1.0e-05"),
    (2.5e-07, "2.5e-07"),
    (0.0001, "0.0001"),
    (-0.0, "-0.0"),
    (2.0, "2.0"),
    (1e14, "100000000000000.0"),
]


@pytest.mark.parametrize(("value", "expected"), FLOAT_TABLE)
def test_floats_per_protocol_table(value: float, expected: str) -> None:
    """Floats are written as Ruby's ``Float#to_s`` (the measured table in protocol.md §5)."""
    assert dumps(value) == expected
    assert ruby_float(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.1, "0.1"),
        (0.0, "0.0"),
        (1.5, "1.5"),
        (100.0, "100.0"),
        (0.001, "0.001"),
        (0.00012, "0.00012"),
        (-1e20, "-1.0e+20"),
        (1.25e16, "1.25e+16"),
        (123456789012345.0, "123456789012345.0"),
        (123456789012345.6, "123456789012345.6"),
        (1234567890123456.0, "1.234567890123456e+15"),
        (1e100, "1.0e+100"),
        (5e-324, "5.0e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
    ],
)
def test_floats_follow_ruby_flo_to_s_layout(value: float, expected: str) -> None:
    """Beyond the table: shortest round-trip digits laid out by Ruby's ``flo_to_s`` rule (numeric.c)."""
    assert dumps(value) == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_floats_are_null(value: float) -> None:
    """NaN and ±Infinity encode as ``null`` (never the invalid ``NaN``/``Infinity`` tokens)."""
    assert dumps(value) == "null"
    assert dumps([value, {"x": value}]) == '[null,{"x":null}]'


@pytest.mark.parametrize(
    "value",
    [
        12345678901234567890,
        -12345678901234567890,
        2**63 - 1,
        -(2**63),
        2**64 - 1,
        2**64,
        -(2**63) - 1,
        -(2**64),
        2**200,
        -(3**300),
        10**400,
    ],
)
def test_integers_of_any_size_are_exact(value: int) -> None:
    """Integers, bignums included (positive and negative), are written exactly in decimal."""
    assert dumps(value) == str(value)
    assert dumps({"n": [value]}) == f'{{"n":[{value}]}}'


def test_nested_floats_in_lists_tuples_and_dicts() -> None:
    """The Ruby float layout and NaN→null apply at any depth, in lists, tuples and dicts."""
    value = {"a": [1.0, (2e20, {"x": 1e16, "y": [math.nan, (1e-05,)]})], "b": {"c": {"d": -0.0}}}
    assert dumps(value) == '{"a":[1.0,[2.0e+20,{"x":1.0e+16,"y":[null,[1.0e-05]]}]],"b":{"c":{"d":-0.0}}}'


def test_float_subclass_uses_ruby_layout() -> None:
    """A float subclass is written like a float."""

    class Money(float):
        pass

    assert dumps(Money(1e20)) == "1.0e+20"
    assert dumps({"m": [Money(1e16)]}) == '{"m":[1.0e+16]}'


def test_dict_subclasses_use_ruby_float_layout() -> None:
    """Floats inside dict subclasses (OrderedDict, defaultdict) are written like any other float."""
    ordered = OrderedDict(f=1e20, g=0.1)
    assert dumps(ordered) == '{"f":1.0e+20,"g":0.1}'
    counts: defaultdict[str, float] = defaultdict(float)
    counts["x"] = 1e16
    assert dumps({"counts": counts}) == '{"counts":{"x":1.0e+16}}'


def test_list_subclass_uses_ruby_float_layout() -> None:
    """Floats inside a list subclass are written like any other float."""

    class Row(list[float]):
        pass

    assert dumps(Row([1e20, 2.0])) == "[1.0e+20,2.0]"


def test_int_subclass_bignum_is_exact() -> None:
    """A bignum whose type is an ``int`` subclass is written exactly too."""

    class Id(int):
        pass

    assert dumps(Id(2**70)) == str(2**70)


def test_protocol_case_53_bytes() -> None:
    """Conformance case 53: floats, U+2028/9, ``<>&``, ``'``, ``"`` and ``/`` give Rails-exact bytes."""
    expected = b'{"f":1.0e+20,"g":0.1,"h":-0.0,"u":"\\u2028\\u2029\\u003c\\u003e\\u0026\'\\"/"}'
    value = {"f": 1e20, "g": 0.1, "h": -0.0, "u": "\u2028\u2029<>&'\"/"}
    assert dumps_bytes(value) == expected
    broadcast = '{"f":1e20,"g":0.1,"h":-0.0,"u":"\\u2028\\u2029<>&\'\\"/"}'
    assert dumps_bytes(loads(broadcast)) == expected


def test_protocol_case_31_message_bytes() -> None:
    """Conformance case 31: the echoed data object escapes ``<>&`` and U+2028 but keeps ``é`` raw."""
    data = loads('{"msg":"<hi> & \\u2028 é","action":"echo"}')
    assert dumps(data) == '{"msg":"\\u003chi\\u003e \\u0026 \\u2028 é","action":"echo"}'


# --- objects without a native JSON form ------------------------------------------------------


@pytest.mark.parametrize("value", [object(), b"bytes", 1 + 2j, {"nested": [object()]}])
def test_objects_without_json_form_raise_encode_error(value: Any) -> None:
    """Values with no JSON form raise EncodeError (a TypeError), at any depth."""
    with pytest.raises(EncodeError):
        dumps(value)
    assert issubclass(EncodeError, TypeError)


def test_sets_encode_as_arrays() -> None:
    """Sets and frozensets encode as JSON arrays of their members."""
    assert dumps({"s": {"only"}}) == '{"s":["only"]}'
    assert sorted(loads(dumps(frozenset({1, 2, 3})))) == [1, 2, 3]


def test_set_members_follow_ruby_rules() -> None:
    """Members of a set get the same float layout, bignum exactness and escaping as anything else."""
    assert dumps({1e20}) == "[1.0e+20]"
    assert dumps({2**70}) == f"[{2**70}]"
    assert dumps({"<"}) == '["\\u003c"]'


def test_as_json_objects_encode_their_as_json() -> None:
    """An object with ``as_json()`` is encoded as what that method returns (Rails' ``as_json``)."""

    class User:
        def as_json(self) -> dict[str, Any]:
            return {"id": 7, "name": "<alice>"}

    assert dumps({"user": User()}) == '{"user":{"id":7,"name":"\\u003calice\\u003e"}}'


def test_as_json_result_follows_ruby_rules() -> None:
    """Floats, NaN and bignums returned by ``as_json()`` follow the same Ruby rules as direct values."""

    class Reading:
        def as_json(self) -> dict[str, Any]:
            return {"f": 1e20, "n": math.nan, "b": 2**70}

    assert dumps(Reading()) == f'{{"f":1.0e+20,"n":null,"b":{2**70}}}'


# --- loads -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [12345678901234567890, -12345678901234567890, 2**64, -(2**64) - 1, 10**400, -(10**400)],
)
def test_loads_keeps_big_integers_exact(value: int) -> None:
    """Integer literals of any size decode to exact Python ints, never floats."""
    decoded = loads(f'{{"n":{value}}}')
    assert decoded == {"n": value}
    assert type(decoded["n"]) is int


def test_loads_round_trips_through_dumps() -> None:
    """What ``loads`` reads, ``dumps`` writes back with Rails' bytes (unicode, bignums, floats)."""
    text = '{"b":2,"a":[12345678901234567890,1.5,"é",null,true,{}]}'
    assert dumps(loads(text)) == text


def test_loads_keeps_key_order() -> None:
    """Decoded objects keep the key order of the text."""
    assert list(loads('{"z":1,"a":2,"m":3}')) == ["z", "a", "m"]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "[NaN]", '{"x":Infinity}', '{"x":[1,-Infinity]}'])
def test_loads_refuses_non_standard_constants(text: str) -> None:
    """``NaN``/``Infinity`` literals are not JSON; Ruby's parser refuses them, so does ``loads``."""
    with pytest.raises(DecodeError):
        loads(text)


@pytest.mark.parametrize("text", [r'"hi \ud800 there"', r'{"a":["\uDC00"]}', r'{"\udbff":1}', r'"\ude00\ud83d"'])
def test_loads_refuses_a_lone_surrogate(text: str) -> None:
    """A lone surrogate escape is no character: nothing could encode it again, so it is refused."""
    with pytest.raises(DecodeError):
        loads(text)


def test_loads_keeps_surrogate_pairs_and_escaped_backslashes() -> None:
    assert loads(r'["\ud83d\ude00", "\\ud800"]') == ["\U0001f600", "\\ud800"]


@pytest.mark.parametrize(
    "text",
    ["", " ", "{not json", "[1,]", '{"a":1,}', "{'a':1}", "[1] x", '"unterminated', '"a\x01b"', "undefined", "{"],
)
def test_loads_invalid_json_raises_decode_error(text: str) -> None:
    """Anything that is not JSON raises DecodeError (a ValueError)."""
    with pytest.raises(DecodeError):
        loads(text)
    assert issubclass(DecodeError, ValueError)


@pytest.mark.parametrize("text", ["[" * 100_000, "[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000])
def test_loads_deep_nesting_is_decode_error(text: str) -> None:
    """Absurdly deep nesting raises DecodeError, never RecursionError."""
    with pytest.raises(DecodeError):
        loads(text)


def test_loads_accepts_bytes() -> None:
    """UTF-8 bytes decode like the equivalent text."""
    assert loads('{"a":"é","n":12345678901234567890}'.encode()) == {"a": "é", "n": 12345678901234567890}


@pytest.mark.parametrize("data", [b"\xff", b'"\xc3\x28"', b'{"a":"\xed\xa0\x80"}', b'["\x80"]'])
def test_loads_invalid_utf8_bytes_is_decode_error(data: bytes) -> None:
    """Bytes that are not UTF-8 raise DecodeError, not UnicodeDecodeError escaping as-is."""
    with pytest.raises(DecodeError):
        loads(data)
