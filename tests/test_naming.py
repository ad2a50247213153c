"""Names Rails derives from objects (protocol.md §4.4): channel names, broadcastings, connection identifiers."""

from __future__ import annotations

import pytest

from cable_server.naming import channel_name_for, connection_identifier, serialize_broadcasting, to_param, top_level_name


class Model:
    """A record with a global id, like an ActiveRecord model under GlobalID."""

    def __init__(self, gid: str, param: str = "7") -> None:
        self._gid = gid
        self._param = param

    def to_gid_param(self) -> str:
        return self._gid

    def to_param(self) -> str:
        return self._param


class Param:
    """An object with only ``to_param``."""

    def __init__(self, param: object) -> None:
        self._param = param

    def to_param(self) -> object:
        return self._param


class Plain:
    def __str__(self) -> str:
        return "plain"


ROOM_GID = "Z2lkOi8vY2FibGUtcmVmL1Jvb20vNw"


# --- channel_name_for ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_name", "channel_name"),
    [
        ("ChatChannel", "chat"),
        ("EchoChannel", "echo"),
        ("GptChatChannel", "gpt_chat"),
        ("Admin::ChatChannel", "admin:chat"),
        ("Admin::GptChatChannel", "admin:gpt_chat"),
        ("HTMLParserChannel", "html_parser"),
        ("Admin::HTMLParserChannel", "admin:html_parser"),
        ("A::B::CChannel", "a:b:c"),
        ("Chat2RoomChannel", "chat2_room"),
        ("HTML5ParserChannel", "html5_parser"),
        ("StreamForChannel", "stream_for"),
        ("Chat", "chat"),
        ("Api::V1::ChatChannel", "api:v1:chat"),
    ],
)
def test_channel_name_for(class_name: str, channel_name: str) -> None:
    """``Channel`` suffix removed, ``::`` to ``:``, then underscored (Rails' ``channel_name``)."""
    assert channel_name_for(class_name) == channel_name


def test_channel_suffix_removed_only_at_end() -> None:
    """Only a trailing ``Channel`` is removed; one elsewhere in the name stays."""
    assert channel_name_for("ChannelListChannel") == "channel_list"


# --- to_param ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("EchoChannel", "EchoChannel"),
        ("::EchoChannel", "EchoChannel"),
        ("Object::EchoChannel", "EchoChannel"),
        ("::Object::Object::EchoChannel", "EchoChannel"),
        ("::Admin::ChatChannel", "Admin::ChatChannel"),
        # What Ruby's const_get refuses stays a name no channel has:
        ("Object::::EchoChannel", "::EchoChannel"),
        ("::::EchoChannel", "::EchoChannel"),
        ("Kernel::EchoChannel", "Kernel::EchoChannel"),
        ("EchoChannel::", "EchoChannel::"),
        ("Object::", ""),
        ("::", ""),
    ],
)
def test_top_level_name_undoes_only_the_top_level_spellings(path: str, name: str) -> None:
    """A leading ``::`` and ``Object::`` segments are dropped (Ruby resolves them to the top level); nothing else is."""
    assert top_level_name(path) == name


def test_to_param_prefers_gid_param() -> None:
    """An object with ``to_gid_param`` is named by it, even if it also has ``to_param``."""
    assert to_param(Model(ROOM_GID, "7")) == ROOM_GID


def test_to_param_falls_back_to_to_param() -> None:
    """Without ``to_gid_param``, ``to_param()`` names the object, converted to str."""
    assert to_param(Param("news")) == "news"
    assert to_param(Param(42)) == "42"


@pytest.mark.parametrize(("obj", "expected"), [(Plain(), "plain"), (7, "7"), ("room", "room"), (1.5, "1.5")])
def test_to_param_falls_back_to_str(obj: object, expected: str) -> None:
    """Without either method, ``str()`` names the object."""
    assert to_param(obj) == expected


def test_to_param_ignores_non_callable_attributes() -> None:
    """A non-callable ``to_gid_param`` attribute is not a method and is skipped."""

    class Odd:
        to_gid_param = "not callable"

        def to_param(self) -> str:
            return "odd"

    assert to_param(Odd()) == "odd"


# --- serialize_broadcasting ---------------------------------------------------------------------------


def test_serialize_broadcasting_string_as_is() -> None:
    """A string is its own broadcasting, untouched (even with ``:`` or unicode)."""
    assert serialize_broadcasting("chat:room:é") == "chat:room:é"


def test_serialize_broadcasting_model() -> None:
    """A model is named by its GlobalID param."""
    assert serialize_broadcasting(Model(ROOM_GID)) == ROOM_GID


def test_serialize_broadcasting_list_joined_with_colon() -> None:
    """Lists and tuples are joined with ``:``, each element by its param (``broadcasting_for``)."""
    assert serialize_broadcasting(["stream_for", Model(ROOM_GID)]) == f"stream_for:{ROOM_GID}"
    assert serialize_broadcasting(("chat", 7, Param("news"))) == "chat:7:news"


def test_serialize_broadcasting_nested_lists() -> None:
    """Nested lists flatten into one ``:``-joined name."""
    assert serialize_broadcasting(["a", ["b", ("c", ["d"])], 5]) == "a:b:c:d:5"


def test_serialize_broadcasting_empty_list() -> None:
    """An empty list is the empty name."""
    assert serialize_broadcasting([]) == ""


# --- connection_identifier -------------------------------------------------------------------------------


def test_connection_identifier_sorted_and_joined() -> None:
    """Identifying values as params, sorted, joined with ``:``."""
    assert connection_identifier(["zed", "alice", "mike"]) == "alice:mike:zed"


def test_connection_identifier_uses_gid_param_before_sorting() -> None:
    """Models contribute their GlobalID param; sorting is on the resulting strings."""
    assert connection_identifier([Model("Zm9v"), "abc", 10, 9]) == "10:9:Zm9v:abc"


def test_connection_identifier_single_and_empty() -> None:
    """One value is itself; no values give the empty string."""
    assert connection_identifier([Model(ROOM_GID)]) == ROOM_GID
    assert connection_identifier([]) == ""


def test_connection_identifier_accepts_any_iterable() -> None:
    """Any iterable of values works (a generator included)."""
    assert connection_identifier(v for v in ("b", "a")) == "a:b"


def test_connection_identifier_leaves_out_unset_values() -> None:
    """``None`` and ``False`` are left out (Rails' ``filter_map``); ``0`` and ``""`` are kept."""
    assert connection_identifier(["b", None, False, "a"]) == "a:b"
    assert connection_identifier([0, ""]) == ":0"
