"""Request slots (llm/slots.py): earlier steps first, prompts that share a start one after the other,
no slot lost to a cancelled waiter; and through the openai backend, the order a server sees."""

from __future__ import annotations

import asyncio
import random

from condor.llm.base import ChatRequest
from condor.llm.openai import OpenAIBackend
from condor.llm.slots import RequestSlots


def request(text: str, priority: int = 0) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], priority=priority)


async def served_order(slots: RequestSlots, requests: list[ChatRequest], *, before_release=None) -> list[str]:
    """Hold the only slot, queue ``requests``, then let go: the order in which they get it."""
    order: list[str] = []
    holder = slots.hold(request("holder"))
    await holder.__aenter__()

    async def take(item: ChatRequest) -> None:
        async with slots.hold(item):
            order.append(item.messages[0]["content"])
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(take(item)) for item in requests]
    await asyncio.sleep(0)
    if before_release is not None:
        await before_release(tasks)
    await holder.__aexit__(None, None, None)
    await asyncio.gather(*tasks, return_exceptions=True)
    return order


async def test_lower_priorities_are_served_first_then_prompt_order():
    slots = RequestSlots(1)
    order = await served_order(slots, [request("c", 2), request("b", 0), request("z", 1), request("a", 0)])
    assert order == ["a", "b", "z", "c"]
    assert slots.free == 1 and slots.waiting == 0


async def test_the_sweep_goes_forward_and_starts_again_from_the_lowest_prompt():
    slots = RequestSlots(1)
    order: list[str] = []
    holder = slots.hold(request("holder"))
    await holder.__aenter__()

    async def take(text: str) -> None:
        async with slots.hold(request(text)):
            order.append(text)
            if text == "m":  # while "m" holds the slot, one prompt before it and one after it arrive
                late.extend([asyncio.create_task(take("b")), asyncio.create_task(take("x"))])
                await asyncio.sleep(0)

    late: list[asyncio.Task] = []
    first = [asyncio.create_task(take(text)) for text in ("m", "k", "t")]
    await asyncio.sleep(0)
    await holder.__aexit__(None, None, None)
    await asyncio.gather(*first)
    await asyncio.gather(*late)
    # k, m in order; "x" is ahead of the cursor and joins this pass; "b" waits for the next one.
    assert order == ["k", "m", "t", "x", "b"]


async def test_a_cancelled_waiter_takes_no_slot():
    slots = RequestSlots(1)

    async def cancel_first(tasks):
        tasks[0].cancel()
        await asyncio.sleep(0)

    order = await served_order(slots, [request("a"), request("b")], before_release=cancel_first)
    assert order == ["b"] and slots.free == 1 and slots.waiting == 0


async def test_a_waiter_cancelled_as_it_is_handed_the_slot_gives_it_back():
    slots = RequestSlots(1)
    holder = slots.hold(request("holder"))
    await holder.__aenter__()
    entered = asyncio.Event()

    async def take():
        async with slots.hold(request("a")):
            entered.set()

    task = asyncio.create_task(take())
    await asyncio.sleep(0)
    await holder.__aexit__(None, None, None)  # hands the slot to the waiter...
    task.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(task, return_exceptions=True)
    assert not entered.is_set() and slots.free == 1
    async with slots.hold(request("b")):
        assert slots.free == 0


async def test_a_free_slot_is_taken_at_once_whatever_the_order():
    slots = RequestSlots(2)
    async with slots.hold(request("z", priority=9)):
        async with slots.hold(request("a")):
            assert slots.free == 0 and slots.waiting == 0
    assert slots.free == 2


async def test_the_server_sees_requests_that_share_a_prompt_start_together(fake_server):
    # Three long templates, four requests each, sent in a shuffled batch through one connection:
    # after the first (which finds the slot free), the server receives each family in a row.
    families = {name: f"{name.upper()} template: " + "instructions " * 60 for name in ("alpha", "beta", "gamma")}
    prompts = [families[name] + f"item {i}" for name in families for i in range(4)]
    random.Random(3).shuffle(prompts)
    backend = OpenAIBackend(fake_server.base_url, "fake-model", concurrency=1)
    try:
        completions = await backend.generate([request(p) for p in prompts])
    finally:
        await backend.aclose()
    assert all(c.ok for c in completions)
    arrived = [body["messages"][0]["content"] for body in fake_server.request_log]
    assert arrived[0] == prompts[0]
    assert arrived[1:] == sorted(prompts[1:])
    families_in_a_row = sum(1 for a, b in zip(arrived[1:], arrived[2:]) if a[:5] == b[:5])
    assert families_in_a_row >= len(prompts) - 4
