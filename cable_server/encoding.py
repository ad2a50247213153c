"""JSON exactly as Rails writes it (ActiveSupport::JSON), and JSON as Rails reads it.

Rails builds every frame with ``ActiveSupport::JSON.encode``: compact, keys in insertion
order, non-ASCII as raw UTF-8, ``<``, ``>`` and ``&`` escaped as ``\\u003c``/``\\u003e``/
``\\u0026``, U+2028/U+2029 escaped, NaN and infinities as ``null``, and floats written the way
Ruby's ``Float#to_s`` writes them (``1.0e+20``, not ``1e+20``). :func:`dumps` reproduces those
bytes so a frame from this server is byte-identical to the frame Rails sends for the same data.

:func:`loads` reads JSON the way Ruby's parser does: integers past 64 bits stay exact, and the
non-standard ``NaN``/``Infinity`` literals are refused. One deliberate limit: an integer of more
than 4300 digits (Python's ``sys.get_int_max_str_digits()``, there because converting one takes
quadratic time) is refused as not JSON, where Ruby would accept it; a frame holding one is ignored.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["DecodeError", "EncodeError", "dumps", "loads", "ruby_float"]

_INT64_MIN = -(2**63)
_UINT64_MAX = 2**64 - 1

# Characters that ActiveSupport escapes after JSON generation; they only occur inside strings.
_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
_ESCAPED = re.compile(b"|".join(re.escape(char) for char, _ in _ESCAPES))


class EncodeError(TypeError):
    """A value has no JSON form (an object that is not a dict, list, str, number, bool or None)."""


class DecodeError(ValueError):
    """The text is not JSON as Ruby's parser accepts it."""


def ruby_float(value: float) -> str:
    """Write a finite float as Ruby's ``Float#to_s`` does.

    Both languages print the shortest digits that round-trip; they differ in layout. With
    ``point`` the position of the decimal point after the first digit, Ruby writes a plain
    number when the point falls inside the digits, or within 15 places right of them, or
    fewer than 4 places left of them; otherwise scientific notation with a signed,
    at-least-two-digit exponent (``numeric.c``, ``flo_to_s``).
    """
    sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    point = len(digit_tuple) + exponent if digits != "0" else 1
    prefix = "-" if sign else ""
    if 0 < point < len(digits):
        return f"{prefix}{digits[:point]}.{digits[point:]}"
    if 0 < point <= 15:
        return f"{prefix}{digits.ljust(point, '0')}.0"
    if -4 < point <= 0:
        return f"{prefix}0.{'0' * -point}{digits}"
    return f"{prefix}{digits[0]}.{digits[1:] or '0'}e{point - 1:+03d}"


def _rubify(value: Any) -> Any:
    """Return ``value`` with floats and big integers replaced by pre-rendered fragments.

    Returns the very same object when nothing needs replacing, so the common case (strings,
    small ints, nested dicts of them) costs one walk and no copy. Exact built-in types take the
    fast path; subclasses (``OrderedDict``, ``IntEnum``, ``namedtuple``...) are normalised first.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return orjson.Fragment(ruby_float(value))
    if kind is int:
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
        return orjson.Fragment(str(value))
    if kind is dict:
        changed = None
        for key, item in value.items():
            new = _rubify(item)
            if new is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = new
        return value if changed is None else changed
    if kind is list or kind is tuple:
        new_items = [_rubify(item) for item in value]
        if all(new is old for new, old in zip(new_items, value, strict=False)):
            return value
        return new_items
    return _rubify_subclass(value)


def _rubify_subclass(value: Any) -> Any:
    """Normalise subclasses of the JSON types to their base type, then rubify them."""
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return _rubify(float(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return _rubify(int(value))
    if isinstance(value, dict):
        return _rubify(dict(value))
    if isinstance(value, (list, tuple)):
        return _rubify(list(value))
    return value


def _default(value: Any) -> Any:
    """Give orjson a JSON form for the types Rails' ``as_json`` also covers."""
    if isinstance(value, (set, frozenset)):
        return _rubify(list(value))
    as_json = getattr(value, "as_json", None)
    if callable(as_json):
        return _rubify(as_json())
    raise EncodeError(f"{type(value).__name__} has no JSON form")


def dumps_bytes(value: Any) -> bytes:
    """Encode ``value`` to the exact UTF-8 bytes ActiveSupport::JSON would produce."""
    try:
        raw = orjson.dumps(_rubify(value), default=_default, option=orjson.OPT_NON_STR_KEYS)
    except orjson.JSONEncodeError as exc:
        raise EncodeError(str(exc)) from exc
    except RecursionError:
        raise EncodeError("nested too deep to encode") from None
    if _ESCAPED.search(raw) is not None:  # rare: one scan instead of five in the common case
        for char, escaped in _ESCAPES:
            raw = raw.replace(char, escaped)
    return raw


def dumps(value: Any) -> str:
    """Encode ``value`` to the exact text ActiveSupport::JSON would produce."""
    return dumps_bytes(value).decode()


def _refuse_constant(name: str) -> Any:
    raise DecodeError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)


#: Ruby's ``JSON.parse`` default ``max_nesting``: deeper arrays and objects are refused, as Rails
#: refuses them (and the encoder, recursive, would fail on them later).
MAX_NESTING = 100


#: A ``\\uD800``-``\\uDFFF`` escape: only its presence makes :func:`loads` look for a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def loads(text: str | bytes) -> Any:
    """Decode JSON text; raises :class:`DecodeError` for anything Ruby's parser refuses, nesting
    deeper than :data:`MAX_NESTING` included, and for a lone surrogate escape (``"\\ud800"``):
    it is no character, nothing could encode it again (a stored question holding one would
    break every later ``history`` of its room)."""
    try:
        if isinstance(text, bytes):
            text = text.decode()
        value = _decoder.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        if isinstance(exc, DecodeError):
            raise
        raise DecodeError(str(exc)) from exc
    if text.count("[") + text.count("{") > MAX_NESTING and _depth(value) > MAX_NESTING:  # counted in C first
        raise DecodeError(f"nesting deeper than {MAX_NESTING}")
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and _lone_surrogate(value):
        raise DecodeError("a lone UTF-16 surrogate is not text")
    return value


def _lone_surrogate(value: Any) -> bool:
    """Whether a string in ``value`` (keys included) holds a surrogate no pair completed."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
    return False


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in ``value`` (iteratively: no recursion limit to hit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest
