"""The bundled demo: ``GptChatChannel`` with a chat page at ``/``, a chat room and an echo channel.

The page is the Vue chat of ``examples/vue-chat`` once it is built (``scripts/demo`` builds it;
``CABLE_DEMO_STATIC`` points elsewhere), else a dependency-free page, also at ``/plain``.

``cable-server`` with no argument serves it. The model comes from the environment
(``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``CABLE_LLM_*``); with none, the offline demo model
answers. A browser that sends ``?name=...`` is identified by that name (its chat room is its
own, and it speaks under that name); one that sends nothing, like the frontend written for the
Rails original, is anonymous: it is served, never refused, under the anonymous rules of
``GptChatChannel`` (a subscription acts on its own room only), and speaks in ``ChatChannel`` as a
random guest name. Names come from the connection, never from the messages.
"""

from __future__ import annotations

import logging
import os
import secrets
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ..channel import Channel
from ..channels import GptChatChannel
from ..connection import Connection
from ..llm import ChatService, ChatSettings
from ..server import CableServer

if TYPE_CHECKING:
    from ..session import Session

__all__ = ["ChatChannel", "DemoConnection", "EchoChannel", "built_frontend", "create_app"]

logger = logging.getLogger("cable_server.demo")


class DemoConnection(Connection):
    """Identified by ``?name=`` (enough for a demo, not authentication); anonymous without it."""

    identified_by = ("current_user",)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        #: What ``ChatChannel`` calls an anonymous connection; a display name, never an identity.
        self.guest_name = f"guest-{secrets.token_hex(2)}"

    async def connect(self) -> None:
        self.current_user = self.request.query_params.get("name", "").strip()[:32] or None

    @property
    def display_name(self) -> str:
        """The name others see: the identity, else the guest name."""
        return self.current_user or self.guest_name


class ChatChannel(Channel):
    """``{"channel":"ChatChannel","room":"lobby"}``: everyone in the room sees what is said."""

    def subscribed(self) -> None:
        room = self.params.get("room")
        if not isinstance(room, str) or not room:
            self.reject()
            return
        self.stream_from(f"chat_{room}")
        self.transmit({"system": f"you are {self._speaker()}"})

    async def speak(self, data: dict[str, Any]) -> None:
        """Broadcast ``text`` to the room, signed with the speaker's connection identity."""
        text = data.get("text")
        if isinstance(text, str) and text.strip():
            await self.server.broadcast(f"chat_{self.params['room']}", {"user": self._speaker(), "text": text})

    def _speaker(self) -> str:
        connection = self.connection
        return connection.display_name if isinstance(connection, DemoConnection) else str(connection.connection_identifier)


class EchoChannel(Channel):
    """Sends back whatever it is given."""

    def echo(self, data: dict[str, Any]) -> None:
        """Transmit ``data`` back, action included."""
        self.transmit(data)

    def receive(self, data: dict[str, Any]) -> None:
        """Transmit ``{"received": data}`` back (a ``send()`` without an action)."""
        self.transmit({"received": data})


async def _index(request: Any) -> HTMLResponse:
    return HTMLResponse(resources.files(__package__).joinpath("index.html").read_text())


class PublicFiles(StaticFiles):
    """A built site's files, never a dotfile nor anything under a dot-directory (``.env``,
    ``.git/config``: a folder served as is may hold them): those are 404, as if absent."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        if any(part.startswith(".") for part in PurePosixPath(path.replace("\\", "/")).parts):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


def built_frontend() -> Path | None:
    """``$CABLE_DEMO_STATIC``, else ``examples/vue-chat/dist`` of this checkout, if built."""
    configured = os.environ.get("CABLE_DEMO_STATIC")
    folder = Path(configured) if configured else Path(__file__).resolve().parents[2] / "examples" / "vue-chat" / "dist"
    return folder if (folder / "index.html").is_file() else None


def create_app(chat_settings: ChatSettings | None = None) -> CableServer:
    """The demo server: GptChatChannel (model from the environment), ChatChannel and EchoChannel, and the chat page."""
    routes: list[BaseRoute] = [Route("/plain", _index)]
    frontend = built_frontend()
    if frontend is None:
        routes.append(Route("/", _index))
        logger.info("serving the plain chat page (build examples/vue-chat for the Vue app)")
    else:
        routes.append(Mount("/", PublicFiles(directory=frontend, html=True)))
        logger.info("serving the chat app from %s", frontend)
    server = CableServer(
        connection_class=DemoConnection,
        channels=[GptChatChannel, ChatChannel, EchoChannel],
        app=Starlette(routes=routes),
    )
    ChatService.install(server, chat_settings)
    return server
