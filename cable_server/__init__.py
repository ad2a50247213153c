"""cable-server: Rails ActionCable's WebSocket protocol, served from Python."""

from __future__ import annotations

from .channel import Channel, rescue_from
from .config import Settings
from .connection import Connection
from .errors import (
    CableError,
    ProtocolError,
    PubSubError,
    SubscriptionError,
    UnauthorizedError,
)
from .protocol import DisconnectReason
from .pubsub import MemoryBackend, PubSubBackend
from .runner import run
from .server import CableServer

__all__ = [
    "CableError",
    "CableServer",
    "Channel",
    "Connection",
    "DisconnectReason",
    "MemoryBackend",
    "ProtocolError",
    "PubSubBackend",
    "PubSubError",
    "Settings",
    "SubscriptionError",
    "UnauthorizedError",
    "rescue_from",
    "run",
]
