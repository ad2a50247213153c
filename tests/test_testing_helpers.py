"""cable_server.testing.CableTester: channel and connection tests with no socket and no server, as users write them."""

from __future__ import annotations

from cable_server import CableServer, Settings
from cable_server.channels import GptChatChannel
from cable_server.demo import ChatChannel, DemoConnection
from cable_server.llm import ChatService, ChatSettings
from cable_server.testing import CableTester, FakeOpenAI, Reply

from .fixture_app import create_app


def chat_room() -> CableServer:
    return CableServer(connection_class=DemoConnection, channels=[ChatChannel], settings=Settings(ping_interval=30))


async def test_a_user_style_channel_test() -> None:
    """The demo chat room, tested the way a user tests their own channel."""
    async with CableTester(chat_room()) as tester:
        alice = await tester.connect(query="name=alice")
        assert alice.connected and alice.connection.current_user is None  # a name is shown, never an identity
        room = await alice.subscribe(ChatChannel, room="lobby")
        assert room.confirmed and room.streams == ["chat_lobby"]
        assert room.transmissions == [{"system": "you are alice"}]
        async with tester.assert_broadcasts("chat_lobby", 1):
            await room.perform("speak", text="hi")
            assert await room.next_message() == {"user": "alice", "text": "hi"}
        tester.assert_broadcast_on("chat_lobby", {"user": "alice", "text": "hi"})


async def test_rejections_of_connections_and_subscriptions() -> None:
    async with CableTester(create_app(Settings(ping_interval=30))) as tester:
        refused = await tester.connect(query={"user": "reject"})
        assert refused.rejected and not refused.connected
        bob = await tester.connect(cookies={"user": "bob"})
        assert bob.connection.current_user == "bob"
        assert (await bob.subscribe("RejectChannel")).rejected
        assert (await bob.subscribe("NoSuchChannel")).rejected


async def test_nothing_is_broadcast_by_a_whisper() -> None:
    """assert_broadcasts with 0, and capture_broadcasts, see exactly the block's broadcasts."""
    async with CableTester(chat_room()) as tester:
        alice = await tester.connect(query="name=alice")
        room = await alice.subscribe(ChatChannel, room="lobby")
        async with tester.assert_broadcasts("chat_lobby", 0):
            await room.perform("speak", text="   ")
            await room.perform("speak")
        async with tester.capture_broadcasts("chat_lobby") as captured:
            await room.perform("speak", text="one")
            await room.next_message()
        assert captured == [{"user": "alice", "text": "one"}]


async def test_gpt_chat_channel_with_the_helpers() -> None:
    """GptChatChannel under the helpers: the room's stream, identity checks, the broadcast frames (the user
    stubbed, as Rails' stub_connection does)."""
    cable = CableServer(connection_class=DemoConnection, channels=[GptChatChannel], settings=Settings(ping_interval=30))
    async with FakeOpenAI(Reply(chunks=["Hi", "!"])) as fake, CableTester(cable) as tester:
        ChatService.install(cable, ChatSettings(api_key="sk-test", base_url=fake.url, max_retries=0))
        alice = await tester.connect(identifiers={"current_user": "alice"})
        assert (await alice.subscribe(GptChatChannel, room="bob")).rejected
        room = await alice.subscribe(GptChatChannel, room="alice")
        assert room.streams == ["gpt_chat:alice"]
        await room.perform("send_message", user_content="Hello?", user_id="bob")
        frames = [await room.next_message() for _ in range(4)]
        assert [f["event"] for f in frames] == ["start", "delta", "delta", "done"]
        assert [f["content"] for f in tester.broadcasts("gpt_chat:alice")] == ["", "Hi", "!", ""]
        assert tester.broadcasts("gpt_chat:bob") == [] and tester.broadcasts("public_bob") == []


async def test_a_stubbed_connection_skips_connect() -> None:
    """identifiers= (Rails' stub_connection): connect does not run (the ?name= it reads is not read); the
    connection is the given user."""
    async with CableTester(chat_room()) as tester:
        carol = await tester.connect(identifiers={"current_user": "carol"}, query="name=Caz")
        assert carol.connection.current_user == "carol"
        room = await carol.subscribe(ChatChannel, room="x")
        assert room.transmissions[0]["system"].startswith("you are guest-")  # ?name= was never read
        assert carol.connection.connection_identifier == "carol"
