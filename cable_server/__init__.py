"""cable-server: Rails ActionCable's WebSocket protocol, served from Python."""

from __future__ import annotations

from importlib.metadata import version as _version

from .auth import TokenAuth, TokenConnection, TokenSource, issue_token
from .broadcaster import Broadcaster, SyncBroadcaster
from .channel import Channel, rescue_from
from .config import Settings
from .connection import Connection, ConnectionStatistics
from .errors import (
    CableError,
    InvalidToken,
    LimitExceeded,
    ProtocolError,
    PubSubError,
    SubscriptionError,
    UnauthorizedError,
)
from .limits import LimitKind
from .protocol import DisconnectReason
from .pubsub import MemoryBackend, PubSubBackend, RedisBackend
from .runner import run
from .server import CableServer

__version__ = _version("cable-server")

__all__ = [
    "Broadcaster",
    "CableError",
    "CableServer",
    "Channel",
    "Connection",
    "ConnectionStatistics",
    "DisconnectReason",
    "InvalidToken",
    "LimitExceeded",
    "LimitKind",
    "MemoryBackend",
    "ProtocolError",
    "PubSubBackend",
    "PubSubError",
    "RedisBackend",
    "Settings",
    "SubscriptionError",
    "SyncBroadcaster",
    "TokenAuth",
    "TokenConnection",
    "TokenSource",
    "UnauthorizedError",
    "__version__",
    "issue_token",
    "rescue_from",
    "run",
]
