"""The ``cable-server`` command."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import logging
import os
import secrets
import ssl
import sys
from collections.abc import Sequence

from . import logs
from .broadcaster import SyncBroadcaster
from .config import parse_origins
from .errors import PubSubError
from .llm.settings import SettingsError
from .pubsub import MemoryBackend, backend_from_url
from .runner import run, run_workers
from .server import CableServer

__all__ = ["load_app", "main"]

logger = logging.getLogger("cable_server")

DEMO = "cable_server.demo:create_app"


def load_app(target: str) -> CableServer:
    """Import ``module:attribute``: a ``CableServer``, or a factory returning one."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"cable-server: APP must look like 'module:attribute', got {target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, attribute)
        if not isinstance(obj, (CableServer, type)) and callable(obj):
            obj = obj()
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"cable-server: cannot load {target!r}: {exc}") from exc
    except SettingsError as exc:  # a CABLE_LLM_* variable the app's chat service cannot take
        raise SystemExit(f"cable-server: {exc}") from None
    if not isinstance(obj, CableServer):
        raise SystemExit(f"cable-server: {target!r} is not a CableServer nor a factory of one")
    return obj


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cable-server",
        description="Serve an ActionCable-compatible WebSocket server (Rails' actioncable-v1-json protocol).",
    )
    parser.add_argument(
        "app",
        nargs="?",
        default=DEMO,
        metavar="APP",
        help=f"module:attribute of a CableServer or factory (default: the demo, {DEMO})",
    )
    parser.add_argument("--host", default=os.environ.get("CABLE_HOST", "127.0.0.1"), help="bind address (default 127.0.0.1)")
    port = _env_number("CABLE_PORT", int)
    parser.add_argument("--port", type=int, default=8000 if port is None else port, help="port (default 8000)")
    parser.add_argument("--path", default=None, help="mount path of the cable (default /cable)")
    tls = parser.add_argument_group("TLS: serve https:// and wss:// directly")
    tls.add_argument(
        "--ssl-certfile",
        default=os.environ.get("CABLE_SSL_CERTFILE") or None,
        metavar="PEM",
        help="certificate chain (and the key, if it is in the same file)",
    )
    tls.add_argument("--ssl-keyfile", default=os.environ.get("CABLE_SSL_KEYFILE") or None, metavar="PEM", help="private key")
    tls.add_argument(
        "--ssl-keyfile-password",
        default=os.environ.get("CABLE_SSL_KEYFILE_PASSWORD") or None,
        metavar="PASSWORD",
        help="password of an encrypted key (better: CABLE_SSL_KEYFILE_PASSWORD)",
    )
    parser.add_argument(
        "--allowed-origins",
        default=os.environ.get("CABLE_ALLOWED_ORIGINS"),
        help="comma-separated extra origins ('/regex/' for a pattern); '*' disables the origin check",
    )
    parser.add_argument(
        "--pubsub",
        default=os.environ.get("CABLE_PUBSUB_URL"),
        metavar="URL",
        help="'memory' (default, one process) or redis://host:port/db to share broadcasts between processes and with Rails",
    )
    parser.add_argument(
        "--channel-prefix",
        default=os.environ.get("CABLE_CHANNEL_PREFIX"),
        help="Rails' channel_prefix: Redis channels are <prefix>:<broadcasting>",
    )
    parser.add_argument(
        "--broadcast-secret",
        default=os.environ.get("CABLE_BROADCAST_SECRET"),
        help="enable POST /_broadcast for callers sending 'Authorization: Bearer <secret>'",
    )
    parser.add_argument(
        "--metrics-secret",
        default=os.environ.get("CABLE_METRICS_SECRET"),
        help="serve /metrics to scrapers sending 'Authorization: Bearer <secret>' (off without it)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes serving one port (needs --pubsub redis://...)")
    parser.add_argument("--fd", type=int, default=None, help=argparse.SUPPRESS)  # a worker's inherited socket
    parser.add_argument("--ping-interval", type=float, default=None, help="seconds between pings (default 3)")
    parser.add_argument(
        "--rails-exact", action="store_true", default=None, help="answer exactly as Rails where we deliberately differ"
    )
    parser.add_argument("--per-message-deflate", action="store_true", default=None, help="negotiate permessage-deflate")
    limits = parser.add_argument_group("limits per client (each hit is refused, logged and counted)")
    for flag, kind, help_text in (
        ("--max-subscriptions", int, "subscriptions per connection (default 100)"),
        ("--command-rate", float, "commands per second per connection, on average (default 50; 0: no limit)"),
        ("--command-burst", int, "commands a connection may send at once above the rate (default 100)"),
        ("--frame-rate", float, "WebSocket frames per second per connection, pings included (default 100; 0: no limit)"),
        ("--frame-burst", int, "frames a connection may send at once above the rate (default 1000)"),
        ("--incomplete-timeout", float, "seconds a frame or fragmented message may take to arrive whole (default 30; 0: none)"),
        (
            "--max-incomplete-bytes-per-address",
            int,
            "bytes of incomplete frames and messages the sockets of one address may hold (default 16 MiB; 0: no limit)",
        ),
        ("--max-connections-per-address", int, "open connections per client address (default 10000)"),
    ):
        variable = "CABLE_" + flag[2:].replace("-", "_").upper()
        limits.add_argument(flag, type=kind, default=_env_number(variable, kind), help=f"{help_text}; env {variable}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("CABLE_LOG_LEVEL", "info"),
        choices=["critical", "error", "warning", "info", "debug"],
    )
    parser.add_argument(
        "--log-format",
        default=os.environ.get("CABLE_LOG_FORMAT", "text"),
        choices=["text", "json"],
        help="json: one JSON object per line, with the connection id, peer and identifiers of a client's records",
    )
    return parser


def _env_number(variable: str, kind: type[int] | type[float]) -> int | float | None:
    raw = os.environ.get(variable)
    if raw is None or not raw.strip():
        return None
    try:
        return kind(raw)
    except ValueError:
        raise SystemExit(f"cable-server: {variable} must be a number, got {raw!r}") from None


def broadcast_command(argv: Sequence[str]) -> None:
    """``cable-server broadcast STREAM JSON``: one broadcast to every server process, through Redis."""
    parser = argparse.ArgumentParser(
        prog="cable-server broadcast",
        description="Broadcast one message to every cable-server (or Rails) process sharing a Redis, "
        "as ActionCable.server.broadcast does.",
    )
    parser.add_argument("stream", help="the broadcasting name, e.g. chat_lobby")
    parser.add_argument("message", help='the message as JSON, e.g. \'{"text":"hi"}\' or \'"a string"\'')
    parser.add_argument("--pubsub", default=os.environ.get("CABLE_PUBSUB_URL"), metavar="URL", help="redis://host:port/db")
    parser.add_argument("--channel-prefix", default=os.environ.get("CABLE_CHANNEL_PREFIX"))
    args = parser.parse_args(argv)
    if not args.pubsub:
        raise SystemExit("cable-server broadcast: needs --pubsub redis://... (or CABLE_PUBSUB_URL)")
    try:
        message = json.loads(args.message)
    except ValueError as exc:
        raise SystemExit(f"cable-server broadcast: MESSAGE is not JSON ({exc}); quote strings: '\"hi\"'") from None
    try:
        with SyncBroadcaster(args.pubsub, channel_prefix=args.channel_prefix) as cable:
            listeners = cable.broadcast(args.stream, message)
    except PubSubError as exc:
        raise SystemExit(f"cable-server broadcast: {exc}") from None
    print(f"broadcast to {args.stream!r}: {listeners} server process(es) listening")


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``cable-server`` with ``argv`` (default: the process's arguments)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["broadcast"]:
        broadcast_command(arguments[1:])
        return
    parser = build_parser()
    args = parser.parse_args(arguments)
    if args.ssl_keyfile and not args.ssl_certfile:
        parser.error("--ssl-keyfile needs --ssl-certfile")
    if args.ssl_certfile:
        check_certificate(args.ssl_certfile, args.ssl_keyfile, args.ssl_keyfile_password)
    scheme = "https" if args.ssl_certfile else "http"
    logs.configure(args.log_level, args.log_format)
    # Factories (and the chat service) read these too, e.g. to keep chat history in the same Redis.
    for variable, value in (("CABLE_PUBSUB_URL", args.pubsub), ("CABLE_CHANNEL_PREFIX", args.channel_prefix)):
        if value:
            os.environ[variable] = value
    try:
        pubsub = backend_from_url(args.pubsub, channel_prefix=args.channel_prefix)
    except ValueError as exc:
        raise SystemExit(f"cable-server: {exc}") from None
    if args.workers > 1:
        if isinstance(pubsub, MemoryBackend):
            raise SystemExit("cable-server: --workers needs a pub/sub shared by the processes: add --pubsub redis://...")
        print(f"cable-server: {args.workers} workers of {args.app} on {scheme}://{args.host}:{args.port}", flush=True)
        if args.app == DEMO:
            from .demo.guests import SECRET_VARIABLE  # here: the demo package loads the chat service

            if not os.environ.get(SECRET_VARIABLE):  # each worker checks the guest cookies the others issue
                os.environ[SECRET_VARIABLE] = secrets.token_urlsafe(32)
        sys.exit(run_workers(arguments, args.workers, host=args.host, port=args.port))
    cable = load_app(args.app)
    if args.pubsub:
        cable.set_pubsub(pubsub)
    configure(cable, args)
    if cable.settings.disable_origin_check:
        logger.warning("origin check disabled: any web page can open a cable to this server")
    json_logs = args.log_format == "json"
    if args.fd is None:
        serving = f"cable-server: serving {args.app} on {scheme}://{args.host}:{args.port} (cable at {cable.settings.path})"
        if json_logs:
            logger.info(serving)
        else:
            print(serving, flush=True)
    run(
        cable,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        fd=args.fd,
        uvicorn_logging=not json_logs,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        ssl_keyfile_password=args.ssl_keyfile_password,
    )


def check_certificate(certfile: str, keyfile: str | None, password: str | None = None) -> None:
    """Load the certificate (and its key, from ``keyfile`` or the same PEM) as the server will,
    so that a missing, unreadable or mismatched file ends the command with one line, not a
    traceback, and an encrypted key without its password is an error, not a prompt."""
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile, password or "")
    except (OSError, ssl.SSLError) as exc:
        key = f" and key {keyfile!r}" if keyfile else " (no --ssl-keyfile: the key must be in the same PEM)"
        hint = " (is the key there, unencrypted or with --ssl-keyfile-password, and the certificate's own?)"
        raise SystemExit(f"cable-server: cannot use certificate {certfile!r}{key}: {exc}{hint}") from None


def configure(cable: CableServer, args: argparse.Namespace) -> None:
    """Apply the command line's settings to the app's."""
    changes: dict[str, object] = {}
    if args.path is not None:
        changes["path"] = args.path
    if args.allowed_origins is not None:
        origins = [o for o in args.allowed_origins.split(",") if o.strip()]
        if "*" in origins:
            changes["disable_origin_check"] = True
        else:
            changes["allowed_origins"] = parse_origins(origins)
    for name in (
        "ping_interval",
        "rails_exact",
        "per_message_deflate",
        "broadcast_secret",
        "metrics_secret",
        "max_subscriptions",
        "command_rate",
        "command_burst",
        "frame_rate",
        "frame_burst",
        "incomplete_timeout",
        "max_incomplete_bytes_per_address",
        "max_connections_per_address",
    ):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    try:
        cable.settings = dataclasses.replace(cable.settings, **changes)  # type: ignore[arg-type]
    except ValueError as exc:  # a negative limit, say
        raise SystemExit(f"cable-server: {exc}") from None
