"""Server-to-client WebSocket text frames, built by hand (sans-I/O).

A server frame is never masked and an ActionCable frame is never fragmented, so the whole
frame is a 2-10 byte header and the UTF-8 payload (RFC 6455, section 5.2). Building it here
lets a connection write a frame straight to its transport, without an ASGI message, a
``websockets`` ``Frame`` object and a serializer per send; under fan-out that per-send
overhead was most of the server's CPU.
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["text_frame"]

_FIN_TEXT: Final = 0x81
_SHORT: Final = struct.Struct("!BBH")
_LONG: Final = struct.Struct("!BBQ")


class _Last:
    """The last frame built, by the identity of its text: a broadcast or a heartbeat hands the
    same ``str`` to every connection in turn, so it is encoded and framed once, not per client."""

    text = ""
    frame = b"\x81\x00"


def text_frame(text: str) -> bytes:
    """The complete, unmasked, final text frame carrying ``text``."""
    if text is _Last.text:
        return _Last.frame
    payload = text.encode()
    size = len(payload)
    if size < 126:
        frame = bytes((_FIN_TEXT, size)) + payload
    elif size < 0x10000:
        frame = _SHORT.pack(_FIN_TEXT, 126, size) + payload
    else:
        frame = _LONG.pack(_FIN_TEXT, 127, size) + payload
    _Last.text, _Last.frame = text, frame
    return frame
