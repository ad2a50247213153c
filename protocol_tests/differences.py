"""Where Rails and cable-server answer differently, and why: the single source of the README table.

A case that covers a difference is marked ``@pytest.mark.differs("key")`` and asks the
``rails_way`` fixture which answer to assert: the Rails one when the suite runs against Rails
(of the affected versions), ours otherwise. ``python -m protocol_tests.differences`` prints the
Markdown tables the README carries; a test keeps the two identical.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DESIGN", "DIFFERENCES", "VERSION", "Difference", "markdown"]

DESIGN = "design"  # we differ from every Rails version on purpose
VERSION = "version"  # Rails 6.1 (Debian's) differs from current Rails; we follow current Rails


@dataclass(frozen=True, slots=True)
class Difference:
    key: str
    kind: str
    situation: str
    rails: str
    ours: str
    why: str
    #: For a VERSION difference: the Rails versions (major, minor) that answer the old way.
    before: tuple[int, int] = (0, 0)

    def applies_to(self, server: str, version: tuple[int, ...]) -> bool:
        """Whether a server of this kind and version gives the Rails answer of this row."""
        if server != "rails":
            return False
        return self.kind == DESIGN or version[:2] < self.before


DIFFERENCES = {
    d.key: d
    for d in (
        Difference(
            "unknown_channel",
            DESIGN,
            "Subscribe to an unknown channel",
            "no answer; `@rails/actioncable` resubscribes every 500 ms forever",
            "`reject_subscription` (`--rails-exact`: no answer)",
            "the client's `rejected()` fires once instead of an endless retry loop",
        ),
        Difference(
            "subscribed_raises",
            DESIGN,
            "Exception in `subscribed`",
            "logged, no answer; the subscription stays registered, half alive (its actions run)",
            "logged; subscription and streams removed; `reject_subscription` (`--rails-exact`: no answer)",
            "no half-alive subscription the client was never told about",
        ),
        Difference(
            "connect_raises",
            DESIGN,
            "Exception in `connect()`",
            "nothing is sent; the socket hangs open, without pings, until the client gives up",
            "logged; the socket is closed with 1011",
            "the client reconnects at once instead of waiting for its stale timer",
        ),
        Difference(
            "command_order",
            DESIGN,
            "Commands of one connection",
            "run on a thread pool: a `message` sent right after its `subscribe` may be dropped or reordered",
            "run strictly in the order sent",
            "`perform` right after `subscribe` always finds the subscription",
        ),
        Difference(
            "broadcast_order",
            DESIGN,
            "A burst of broadcasts on one stream",
            "may reach a subscriber reordered",
            "always in broadcast order",
            "streamed text (LLM tokens) arrives intact",
        ),
        Difference(
            "rejected_streams",
            DESIGN,
            "A channel that calls `stream_from` and then `reject`",
            "6.1: the rejected subscription still receives that stream's broadcasts (observed)",
            "the streams of a rejected subscription are stopped; nothing arrives",
            "a client never gets frames for a subscription it was told was rejected",
        ),
        Difference(
            "resubscribe_streams",
            DESIGN,
            "`unsubscribe` then an immediate `subscribe` of the same identifier",
            "6.1: the subscribe may run first and be dropped as a duplicate; when confirmed, its stream can stay dead (observed)",
            "confirmed afresh, and broadcasts arrive",
            "stream bookkeeping is per subscription and serialized per connection",
        ),
        Difference(
            "origin_patterns",
            DESIGN,
            "`allowed_request_origins` patterns",
            "a pattern matching anywhere in the Origin admits it",
            "a pattern must match the whole Origin",
            "`/https?:\\/\\/allowed\\.example/` must not admit `http://allowed.example.evil.com`",
        ),
        Difference(
            "ext_protocol",
            DESIGN,
            "The client offers `actioncable-v1-ext-json` (AnyCable's extension)",
            "not supported: the next subprotocol offered is chosen",
            "negotiated: `welcome` with `sid`, broadcasts with `stream_id`/`epoch`/`offset`, `history`, `ping`/`pong`",
            "`@anycable/web` clients get missed broadcasts back after a reconnect, with no app change",
        ),
        Difference(
            "hooks_as_actions",
            DESIGN,
            'A client performs a hook: `perform("subscribed")`, `perform("unsubscribed")`',
            "runs it when the channel defines it publicly (generated channels do): streams opened twice, "
            "so each broadcast arrives twice; `unsubscribed` runs while the subscription stays",
            "ignored, like any method that is not an action (logged)",
            "a client cannot double its streams or announce a leave (a presence `unsubscribed`) without leaving",
        ),
        Difference(
            "frame_size",
            DESIGN,
            "A client frame over 1 MiB",
            "accepted up to 64 MiB (websocket-driver's limit)",
            "closed with 1009 (`Settings(max_frame_bytes=...)`, 1 MiB by default)",
            "one client cannot make a process hold 64 MiB at once; ActionCable commands are small",
        ),
        Difference(
            "handshake_headers",
            DESIGN,
            "An upgrade without `Sec-WebSocket-Key` or without `Sec-WebSocket-Version`",
            "no key: 500 (puma's low-level error); no version: 101 with a draft-75 (pre-RFC 6455) handshake no browser speaks",
            "400, naming the missing header",
            "RFC 6455 requires both; the answer says what is wrong",
        ),
        Difference(
            "base_channel",
            VERSION,
            'Subscribe to `{"channel":"ActionCable::Channel::Base"}`',
            "6.1 confirms it; 7.0+ say nothing",
            "`reject_subscription`, as for any unknown channel",
            "the framework's base class is not a channel",
            before=(7, 0),
        ),
        Difference(
            "remote_disconnect_frame",
            VERSION,
            "`remote_connections.where(...).disconnect`",
            'before 7.1: close 1000 with no frame; 7.1+: `{"type":"disconnect","reason":"remote","reconnect":...}` then close',
            "the 7.1+ frame, then close 1000",
            "the client learns whether to reconnect",
            before=(7, 1),
        ),
        Difference(
            "not_found_content_type",
            VERSION,
            "Content-Type of the 404 `Page not found`",
            "before 7.1: `text/plain`; 7.1+: `text/plain; charset=utf-8`",
            "`text/plain; charset=utf-8`",
            "current Rails",
            before=(7, 1),
        ),
    )
}


def markdown(kind: str) -> str:
    """The README table of one kind of difference."""
    if kind == DESIGN:
        lines = ["| Situation | Rails | cable-server | why |", "|---|---|---|---|"]
    else:
        lines = ["| Situation | Rails | cable-server (as current Rails) |", "|---|---|---|"]
    for d in DIFFERENCES.values():
        if d.kind == kind:
            cells = [d.situation, d.rails, d.ours] + ([d.why] if kind == DESIGN else [])
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(DESIGN), markdown(VERSION), sep="\n\n")
