"""The bundled demo: ``GptChatChannel`` with a chat page at ``/``, a chat room and an echo channel.

The page is the Vue chat of ``examples/vue-chat`` once it is built (``scripts/demo`` builds it;
``CABLE_DEMO_STATIC`` points elsewhere), else a dependency-free page, also at ``/plain``.

``cable-server`` with no argument serves it. The model comes from the environment
(``OPENAI_API_KEY``, ``OPENAI_BASE_URL``, ``CABLE_LLM_*``); with none, the offline demo model
answers.

Who is who, for the demo only (a real application identifies its users by its own session or
token in ``Connection.connect``):

- a client that names itself (``?name=...``, as the demo's pages do) is a *guest*: identified by a
  random id the server issues in a signed, HttpOnly cookie on the handshake response
  (:mod:`cable_server.demo.guests`) and checks on every later handshake. Its ``GptChatChannel``
  rooms are its own (the room it names, among its own: ``gpt_chat:<guest>/<room>``), shared by
  its tabs and kept across reloads; no other client reaches them, whatever it sends. The name is
  only what ``ChatChannel`` shows, since anyone may call themselves anything in a chat room; it
  grants nothing, and a request line that logs it gives nothing away.
- a client that names nothing, like the frontend written for the Rails original, is anonymous,
  whatever cookie it carries: served, never refused, under the anonymous rules of
  ``GptChatChannel`` (a subscription acts on its own room, ``public_<room>``, only), and speaks in
  ``ChatChannel`` as a random guest name.

Names and identities come from the connection, never from the messages.
"""

from __future__ import annotations

import logging
import os
import secrets
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from ..channel import Channel
from ..channels import GptChatChannel
from ..connection import Connection
from ..cookies import request_cookies
from ..llm import ChatService, ChatSettings
from ..server import CableServer
from .guests import GuestPass

if TYPE_CHECKING:
    from ..session import Session

__all__ = [
    "ChatChannel",
    "DemoConnection",
    "DemoServer",
    "EchoChannel",
    "GuestChatChannel",
    "GuestPass",
    "built_frontend",
    "create_app",
]

logger = logging.getLogger("cable_server.demo")

#: Where :class:`DemoServer` leaves a handshake's guest for :class:`DemoConnection` (``scope["state"]``).
GUEST_STATE = "cable_demo_guest"


def chosen_name(query: QueryParams) -> str | None:
    """The name a client gave itself (``?name=``, trimmed, 32 characters at most); ``None``: none."""
    return query.get("name", "").strip()[:32] or None


class DemoServer(CableServer):
    """The demo's ``CableServer``: on each handshake of the cable, decides who the client is from
    its guest cookie (:meth:`GuestPass.admit`) and, for a guest issued just now, adds the cookie
    to the ``101`` response. The connection reads that decision in :meth:`DemoConnection.connect`,
    which runs after the response has gone."""

    def __init__(self, *, guests: GuestPass, **options: Any) -> None:
        super().__init__(**options)
        #: The secret that issues and checks guest cookies.
        self.guests = guests

    async def endpoint(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The cable, as :meth:`CableServer.endpoint`, after the guest is known."""
        if scope["type"] == "websocket":
            request = HTTPConnection(scope)
            named = chosen_name(request.query_params) is not None
            admission = self.guests.admit(request_cookies(request), named=named, scheme=scope.get("scheme", "ws"))
            scope.setdefault("state", {})[GUEST_STATE] = admission.guest
            if admission.set_cookie is not None:
                send = _with_header(send, b"set-cookie", admission.set_cookie.encode("latin-1"))
        await super().endpoint(scope, receive, send)


def _with_header(send: Send, name: bytes, value: bytes) -> Send:
    """``send`` with one more header on the handshake response (``websocket.accept``)."""

    async def sending(message: Message) -> None:
        if message["type"] == "websocket.accept":
            message = {**message, "headers": [*message.get("headers", []), (name, value)]}
        await send(message)

    return sending


class DemoConnection(Connection):
    """A guest, identified by the signed cookie :class:`DemoServer` checked or issued on the
    handshake (``current_user`` is its guest id), or anonymous; ``?name=`` is a display name only.

    Served by another ``CableServer`` (no guest was decided), every connection is anonymous.
    """

    identified_by = ("current_user",)

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        #: The name the client gave itself (``?name=``): shown to others, never an identity.
        self.name: str | None = None
        #: What ``ChatChannel`` calls a connection that gave no name.
        self.guest_name = f"guest-{secrets.token_hex(2)}"

    async def connect(self) -> None:
        self.name = chosen_name(self.request.query_params)
        self.current_user = self.request.scope.get("state", {}).get(GUEST_STATE)

    @property
    def display_name(self) -> str:
        """The name others see: the one the client gave, else the guest name."""
        return self.name or self.guest_name


class GuestChatChannel(GptChatChannel):
    """``GptChatChannel`` as the demo serves it (clients still say ``"GptChatChannel"``): a guest
    joins the room its subscription names, among its own rooms, broadcast as
    ``gpt_chat:<guest>/<room>``. The demo's pages name their room after an id they keep in the
    browser, which the server cannot check; under the guest it is private. Anonymous connections
    are served as by ``GptChatChannel``."""

    identifier_name = "GptChatChannel"

    def user_room(self, owner: str, requested: str | None) -> str | None:
        """``<guest>/<room>``: a guest id is url-safe base64, never a ``/``, so no guest can spell another's room."""
        return None if requested is None else f"{owner}/{requested}"


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


def create_app(chat_settings: ChatSettings | None = None, *, guests: GuestPass | None = None) -> DemoServer:
    """The demo server: GptChatChannel (model from the environment), ChatChannel and EchoChannel, and the chat page.

    ``guests``: the secret of the guest cookies; default ``CABLE_DEMO_SECRET``, else a random one.
    """
    routes: list[BaseRoute] = [Route("/plain", _index)]
    frontend = built_frontend()
    if frontend is None:
        routes.append(Route("/", _index))
        logger.info("serving the plain chat page (build examples/vue-chat for the Vue app)")
    else:
        routes.append(Mount("/", PublicFiles(directory=frontend, html=True)))
        logger.info("serving the chat app from %s", frontend)
    server = DemoServer(
        guests=guests or GuestPass.from_environment(),
        connection_class=DemoConnection,
        channels=[GuestChatChannel, ChatChannel, EchoChannel],
        app=Starlette(routes=routes),
    )
    ChatService.install(server, chat_settings)
    return server
