"""The bundled demo: ``GptChatChannel`` with a chat page at ``/``, a chat room and an echo channel.

``cable-server`` with no argument serves it. The model comes from the environment
(``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``CABLE_LLM_*``); with none, the offline demo model
answers. Each browser gets its name (``?name=...``, else a guest name) from its ``Connection``;
the name comes from the connection, never from the messages, so nobody can read or speak as
someone else.
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route

from ..channel import Channel
from ..channels import GptChatChannel
from ..connection import Connection
from ..llm import ChatService, ChatSettings
from ..server import CableServer

__all__ = ["ChatChannel", "DemoConnection", "EchoChannel", "create_app"]


class DemoConnection(Connection):
    identified_by = ("current_user",)

    async def connect(self) -> None:
        name = self.request.query_params.get("name", "").strip()[:32]
        self.current_user = name or f"guest-{secrets.token_hex(2)}"


class ChatChannel(Channel):
    """``{"channel":"ChatChannel","room":"lobby"}``: everyone in the room sees what is said."""

    def subscribed(self) -> None:
        room = self.params.get("room")
        if not isinstance(room, str) or not room:
            self.reject()
            return
        self.stream_from(f"chat_{room}")
        self.transmit({"system": f"you are {self.current_user}"})

    async def speak(self, data: dict[str, Any]) -> None:
        text = data.get("text")
        if isinstance(text, str) and text.strip():
            await self.server.broadcast(f"chat_{self.params['room']}", {"user": self.current_user, "text": text})


class EchoChannel(Channel):
    """Sends back whatever it is given."""

    def echo(self, data: dict[str, Any]) -> None:
        self.transmit(data)

    def receive(self, data: dict[str, Any]) -> None:
        self.transmit({"received": data})


async def _index(request: Any) -> HTMLResponse:
    return HTMLResponse(resources.files(__package__).joinpath("index.html").read_text())


def create_app(chat_settings: ChatSettings | None = None) -> CableServer:
    server = CableServer(
        connection_class=DemoConnection,
        channels=[GptChatChannel, ChatChannel, EchoChannel],
        app=Starlette(routes=[Route("/", _index)]),
    )
    ChatService.install(server, chat_settings)
    return server
