"""Names Rails derives from objects: channel names, broadcastings, connection identifiers."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["channel_name_for", "connection_identifier", "serialize_broadcasting", "to_param", "top_level_name"]

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def channel_name_for(identifier_name: str) -> str:
    """``ChatChannel`` -> ``chat``, ``Admin::ChatChannel`` -> ``admin:chat`` (Rails' ``channel_name``)."""
    name = identifier_name.removesuffix("Channel").replace("::", ":")
    return ":".join(_CAMEL_BOUNDARY.sub("_", part).lower() for part in name.split(":"))


#: What a constant path may start with and still name a top-level constant (one regex: a loop of
#: removeprefix would copy the name once per "Object::", quadratic in a 1 MiB identifier).
_TOP_LEVEL_PREFIX = re.compile(r"(?:::)?(?:Object::)*")


def top_level_name(constant_path: str) -> str:
    """The name a Ruby constant path gives from the top level, as Rails' ``safe_constantize``
    (``Object.const_get``) reads a subscribe's channel: ``::EchoChannel``, ``Object::EchoChannel``
    and ``::Object::Object::EchoChannel`` all name ``EchoChannel`` (``Object::X`` is ``X``).

    Only these spellings are undone; the result is still a name to look up among the registered
    channels, never a path to walk."""
    return _TOP_LEVEL_PREFIX.sub("", constant_path, count=1)  # the pattern matches at 0, if only ""


def to_param(obj: Any) -> str:
    """How an object names itself in a broadcasting: ``to_gid_param()`` (a model's global id),
    else ``to_param()``, else ``str()``."""
    for method in ("to_gid_param", "to_param"):
        func = getattr(obj, method, None)
        if callable(func):
            return str(func())
    return str(obj)


def serialize_broadcasting(obj: Any) -> str:
    """Join an object, or a list/tuple of them (nested), with ``:`` as Rails does."""
    if isinstance(obj, (list, tuple)):
        return ":".join(serialize_broadcasting(item) for item in obj)
    return obj if isinstance(obj, str) else to_param(obj)


def connection_identifier(values: Iterable[Any]) -> str:
    """The connection's identifier: its identifying values as params, sorted, joined by ``:``.

    Unset values (``None``, ``False``) are left out, as Rails' ``filter_map`` leaves out nil and
    false, so ``remote_connections.where(user=u)`` names the same connection as the connection
    itself even when it has other identifiers.
    """
    return ":".join(sorted(to_param(value) for value in values if value is not None and value is not False))
