"""A fair share for every address: of the answer slots, of the line waiting for them, and of the
process' model budget. One address holds at most ``max_concurrent_per_address`` slots and
``max_queued_per_address`` places in line, a freed slot goes to the address holding the fewest,
and the last quarter of the process' budget is kept for addresses that have not spent half their
own: a user from another address still gets an answer while an attacker holds its share."""

from __future__ import annotations

import asyncio

from cable_server.llm.budget import Allowance, Budget
from cable_server.llm.errors import ErrorCategory, GenerationError
from cable_server.llm.pool import GenerationPool
from cable_server.testing import FakeOpenAI, Reply

from .chat_helpers import read_answer, room, start_chat
from .conftest import ServerFactory


class Holder:
    """Generations holding a slot of ``pool`` for ``key`` until released; what they were told."""

    def __init__(self, pool: GenerationPool) -> None:
        self.pool = pool
        self.order: list[str] = []
        self.positions: dict[str, list[int]] = {}
        self.release: dict[str, asyncio.Event] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, key: str) -> None:
        self.release[name] = asyncio.Event()

        async def told(position: int) -> None:
            self.positions.setdefault(name, []).append(position)

        async def hold() -> None:
            async with self.pool.slot(told, key):
                self.order.append(name)
                await self.release[name].wait()

        self.tasks[name] = asyncio.ensure_future(hold())


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_address_holds_its_share_of_slots_and_another_takes_a_free_one_at_once() -> None:
    holder = Holder(GenerationPool(limit=4, max_waiting=10, per_key=2))
    for n in range(4):
        holder.start(f"a{n}", "attacker")
    await settle()
    holder.start("v", "victim")
    await settle()
    assert holder.order == ["a0", "a1", "v"] and holder.pool.active == 3
    assert holder.positions == {"a2": [1], "a3": [2]}  # slots are free, but not for the attacker


async def test_a_freed_slot_goes_to_the_address_holding_the_fewest() -> None:
    """The victim asked last, yet gets the first slot freed: the attacker already holds two."""
    holder = Holder(GenerationPool(limit=2, max_waiting=10))
    for n in range(4):
        holder.start(f"a{n}", "attacker")
    await settle()
    holder.start("v", "victim")
    await settle()
    assert holder.positions == {"a2": [1, 2], "a3": [2, 3], "v": [1]}  # the victim holds none: next
    holder.release["a0"].set()
    await settle()
    assert holder.order[-1] == "v"
    holder.release["a1"].set()
    await settle()
    assert holder.order[-1] == "a2" and holder.positions["a3"] == [2, 3, 2, 1]
    for event in holder.release.values():
        event.set()
    await asyncio.gather(*holder.tasks.values())
    assert holder.pool.active == 0 and holder.pool.waiting == 0


async def test_an_address_fills_only_its_share_of_the_line() -> None:
    holder = Holder(GenerationPool(limit=1, max_waiting=10, per_key_waiting=3))
    for n in range(5):
        holder.start(f"a{n}", "attacker")
    await settle()
    refused = [name for name, task in holder.tasks.items() if task.done()]
    assert refused == ["a4"]
    error = holder.tasks["a4"].exception()
    assert isinstance(error, GenerationError) and error.category is ErrorCategory.OVERLOADED
    holder.start("v", "victim")
    await settle()
    assert not holder.tasks["v"].done() and holder.positions["v"] == [1]  # it holds none: next


async def test_a_waiter_that_gives_up_frees_its_place_for_its_address() -> None:
    holder = Holder(GenerationPool(limit=1, max_waiting=10, per_key_waiting=1))
    holder.start("a0", "attacker")
    holder.start("a1", "attacker")
    await settle()
    holder.tasks["a1"].cancel()
    await settle()
    holder.start("a2", "attacker")
    await settle()
    assert not holder.tasks["a2"].done() and holder.pool.waiting == 1


def test_a_heavy_address_cannot_spend_the_last_quarter_of_the_process_budget() -> None:
    budget = Budget(per_requester=Allowance(0, 0), per_address=Allowance(100, 0), total=Allowance(100, 0))
    taken = sum(budget.charge(1, requester=None, address="attacker") is None for _ in range(100))
    assert taken == 75  # from the 51st it is heavy: it may not go below the reserve
    assert budget.charge(1, requester=None, address="victim") is None
    refusal = budget.charge(1, requester=None, address="attacker")
    assert refusal is not None and refusal.bound == "total"


def test_light_addresses_spend_the_reserve_too() -> None:
    """Ten addresses asking four each (under half their own) spend the whole process' minute,
    reserve included; then the process is spent for everyone, which is the cap."""
    budget = Budget(per_requester=Allowance(0, 0), per_address=Allowance(10, 0), total=Allowance(40, 0))
    for n in range(10):
        assert all(budget.charge(1, requester=None, address=f"a{n}") is None for _ in range(4))
    refusal = budget.charge(1, requester=None, address="late")
    assert refusal is not None and refusal.bound == "total"


async def test_a_victim_from_another_address_is_answered_while_an_attacker_holds_its_share(
    serve: ServerFactory, fake_openai: FakeOpenAI
) -> None:
    """An attacker's 12 sockets ask slow answers with 4 slots (2 its share) and a line of 3 per
    address: it streams 2, waits with 3, is refused 7; a victim from another address gets a slot
    at once and its whole answer."""
    chat = await start_chat(serve, fake_openai, max_concurrent=4, max_concurrent_per_address=2, max_queued_per_address=3)
    fake_openai.default = Reply(chunks=["slow"] * 100, delay=0.05)
    attackers = [await chat.server.client(headers={"X-Forwarded-For": "203.0.113.9"}) for _ in range(12)]
    categories = []
    for n, client in enumerate(attackers):
        await client.subscribe(room(f"a{n}"))
        await client.perform(room(f"a{n}"), "send_message", user_content="go", user_id=f"a{n}")
    for client in attackers:
        frame = (await client.recv())["message"]
        if frame["event"] == "start":
            frame = (await client.recv())["message"]
        categories.append(frame.get("error", {}).get("category") or frame["event"])
    assert sorted(categories).count("overloaded") == 7 and categories.count("queued") == 3
    fake_openai.push(Reply(chunks=["for", " you"]))
    victim = await chat.server.client(headers={"X-Forwarded-For": "198.51.100.7"})
    await victim.subscribe(room("v"))
    await victim.perform(room("v"), "send_message", user_content="hello", user_id="v")
    answer = await read_answer(victim, room("v"), timeout=5)
    assert "queued" not in [frame["event"] for frame in answer.frames]
    assert answer.last["event"] == "done"
