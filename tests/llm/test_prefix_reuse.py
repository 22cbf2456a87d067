"""The embedded model's queue (llm/prefix_reuse.py): the waiting request that starts like the last
prompt and its reply goes next, follow-ups sent just after a reply are counted, nobody waits for ever,
errors and cancellations reach only their own caller."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from condor.llm.base import ChatRequest, Completion
from condor.llm.prefix_reuse import PrefixReuseQueue, prompt_text, shared_start

CRITIQUE = "You review answers. Strengths, weaknesses, suggestions. " * 4
REFINE = "You rewrite answers so that they are better. " * 4


def request(system: str, user: str, priority: int = 0) -> ChatRequest:
    return ChatRequest(messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                       priority=priority)


class Model:
    """Stands in for llama.cpp: one call at a time, records the order, answers after a short while."""

    def __init__(self, seconds: float = 0.01, fail_on: str | None = None) -> None:
        self.order: list[str] = []
        self.seconds = seconds
        self.fail_on = fail_on
        self.running = 0
        self.lock = threading.Lock()

    def __call__(self, item: ChatRequest) -> Completion:
        with self.lock:
            self.running += 1
            assert self.running == 1, "two calls at once"
        try:
            user = item.messages[-1]["content"]
            self.order.append(user)
            time.sleep(self.seconds)
            if self.fail_on is not None and user == self.fail_on:
                raise RuntimeError("llama.cpp: context overflow")
            return Completion(text=f"reply to {user}")
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def worker():
    pool = ThreadPoolExecutor(max_workers=1)
    yield pool
    pool.shutdown(wait=True)


async def test_a_resample_sent_after_its_reply_goes_before_other_records(worker):
    model = Model()
    queue = PrefixReuseQueue(model, worker)
    first = request(REFINE, "question A, answer A, critique A")

    async def with_resample() -> None:
        await queue.run(first)
        # The gate rejected the reply: the same prompt again (a new seed), sent after the reply came back.
        await queue.run(replace(first, sample_index=1))

    await asyncio.gather(with_resample(), queue.run(request(REFINE, "question B, answer B, critique B")),
                         queue.run(request(CRITIQUE, "question C, answer C")))
    assert model.order == ["question A, answer A, critique A", "question A, answer A, critique A",
                           "question B, answer B, critique B", "question C, answer C"]


async def test_without_the_moment_to_settle_the_resample_would_wait_behind_the_others(worker):
    # The same workload with no settle time: the order a first-come queue gives, which the test above beats.
    model = Model()
    queue = PrefixReuseQueue(model, worker, settle=0)
    first = request(REFINE, "question A, answer A, critique A")

    async def with_resample() -> None:
        await queue.run(first)
        await asyncio.sleep(0.005)  # the caller's own checks take a while
        await queue.run(replace(first, sample_index=1))

    await asyncio.gather(with_resample(), queue.run(request(REFINE, "question B, answer B, critique B")))
    assert model.order[1] == "question B, answer B, critique B"


async def test_a_repair_turn_extends_the_prompt_and_its_reply_so_it_goes_next(worker):
    model = Model()
    queue = PrefixReuseQueue(model, worker)
    original = request(CRITIQUE, "question A, answer A")

    async def with_repair() -> None:
        reply = await queue.run(original)
        repair = ChatRequest(messages=original.messages + [
            {"role": "assistant", "content": reply.text},
            {"role": "user", "content": "Your reply could not be read: repair A"},
        ])
        assert queue.last.startswith(prompt_text(original))
        assert prompt_text(repair).startswith(queue.last)
        await queue.run(repair)

    others = [queue.run(request(CRITIQUE, f"question {name}, answer {name}")) for name in "BCD"]
    await asyncio.gather(with_repair(), *others)
    assert model.order[:2] == ["question A, answer A", "Your reply could not be read: repair A"]


async def test_requests_of_the_last_template_go_before_other_templates_then_priority_decides(worker):
    model = Model()
    queue = PrefixReuseQueue(model, worker)
    await queue.run(request(CRITIQUE, "question A, answer A"))
    await asyncio.gather(
        queue.run(request("You are a helpful assistant.", "answer me X", priority=1)),
        queue.run(request(REFINE, "refine Y", priority=3)),
        queue.run(request(CRITIQUE, "question Z, answer Z", priority=2)),
        queue.run(request("You are a helpful assistant.", "answer me W", priority=1)),
    )
    # The critique shares the template; after it nothing shares more than the role name and a word
    # (under MIN_SHARED), so the lower priority goes first, and among equals the one that arrived first.
    assert model.order[1:] == ["question Z, answer Z", "answer me X", "answer me W", "refine Y"]


async def test_a_request_that_shares_nothing_is_passed_over_at_most_patience_times(worker):
    model = Model(seconds=0.001)
    queue = PrefixReuseQueue(model, worker, patience=3)
    lonely = asyncio.create_task(queue.run(request("Something else entirely.", "lonely")))

    async def chain(name: str, length: int) -> None:
        for step in range(length):  # every reply is followed by a request that starts like it
            await queue.run(request(CRITIQUE, f"{name} {step}"))

    await asyncio.gather(chain("a", 8), chain("b", 8), lonely)
    # 1 to start, then passed over 3 times, then served.
    assert model.order.index("lonely") <= 4


async def test_an_error_reaches_its_own_caller_and_the_queue_goes_on(worker):
    model = Model(fail_on="bad")
    queue = PrefixReuseQueue(model, worker)
    results = await asyncio.gather(queue.run(request(CRITIQUE, "good 1")), queue.run(request(CRITIQUE, "bad")),
                                   queue.run(request(CRITIQUE, "good 2")), return_exceptions=True)
    assert isinstance(results[1], RuntimeError)
    assert [r.text for r in (results[0], results[2])] == ["reply to good 1", "reply to good 2"]
    assert sorted(model.order) == ["bad", "good 1", "good 2"]
    # After a failure the queue does not know what the model holds, so nothing counts as shared.
    assert (queue.last == "") == (model.order[-1] == "bad")


async def test_a_cancelled_waiter_is_never_sent(worker):
    model = Model(seconds=0.05)
    queue = PrefixReuseQueue(model, worker)
    running = asyncio.create_task(queue.run(request(CRITIQUE, "first")))
    await asyncio.sleep(0.01)
    doomed = asyncio.create_task(queue.run(request(CRITIQUE, "cancelled")))
    await asyncio.sleep(0)
    doomed.cancel()
    later = await queue.run(request(CRITIQUE, "later"))
    assert (await running).text == "reply to first" and later.text == "reply to later"
    assert "cancelled" not in model.order and doomed.cancelled()


def test_the_queue_serves_a_new_event_loop_after_the_old_one_closed(worker):
    model = Model()
    queue = PrefixReuseQueue(model, worker)
    assert asyncio.run(queue.run(request(CRITIQUE, "one"))).text == "reply to one"
    assert asyncio.run(queue.run(request(CRITIQUE, "two"))).text == "reply to two"
    assert model.order == ["one", "two"]


@given(st.text(max_size=60), st.text(max_size=60), st.text(max_size=20))
def test_shared_start_is_the_longest_common_prefix(a, b, common):
    expected = 0
    for x, y in zip(common + a, common + b):
        if x != y:
            break
        expected += 1
    assert shared_start(common + a, common + b) == expected
