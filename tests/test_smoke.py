from protocol_tests.client import ident

from .conftest import RunningServer


async def test_subscribe_and_echo(server: RunningServer) -> None:
    """A client subscribes and an action's transmit comes back on its identifier."""
    client = await server.client("?user=alice")
    i = ident("EchoChannel", room="r1")
    await client.subscribe(i)
    await client.perform(i, "echo", msg="hi")
    assert await client.recv() == {"identifier": i, "message": {"msg": "hi", "action": "echo"}}
