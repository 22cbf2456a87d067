"""Streaming a chain of steps in one process: a record goes on to its next step as soon as it is ready.

Run step by step, every step waits for the slowest request of the one before, and the server idles at
each step's tail. Here every step of a chain runs at once, connected by in-memory inboxes: a model
step hands each unit's records to the steps that read it the moment the unit is written, a gate step
checks records as they come. Each step still writes its own units to ``stages/<step>/``, so resume,
the per-step records and the reader are the same as step by step.

Three rules keep this correct and bounded:

- **Ordered gates see records in id order.** A gate step with an ``ordered`` gate (near-duplicate
  removal keeps state) holds what arrives until no record with a smaller id can still come, then
  checks records in id order, as the step-by-step run does, so the same seed gives the same records.
  "Can still come" is known because a stage never makes an output whose id sorts before its input's
  (questions add ``/<difficulty>``, the others keep the id), and because what feeds such a gate from
  the run directory is read in id order (sorted on disk if need be): the smallest id anywhere
  upstream, in an inbox, in flight or not yet read, bounds every id still to come. A record that
  breaks the rule stops the run with an error rather than change the result silently. A ``chunked``
  gate (MiniLM embeddings, whose last bits depend on the batch) also gets the very chunks of
  :data:`~condor.run.steps.GATE_CHUNK` records of that run, at the cost of waiting for each to fill.
- **Memory is bounded.** Records are read from the run directory only while fewer than ``budget``
  records are alive in the chain (in inboxes, in flight, held by a gate); model steps take inputs as
  their window allows. The one exception: when everything alive is held by ordered gates waiting for a
  smaller id, reading goes on, since nothing else could move.
- **Earlier steps first.** Model steps pass their position in the chain as the requests' priority, so
  a backend with more waiting requests than slots serves earlier steps first (:mod:`condor.llm.slots`);
  later steps always have work, and the run ends on its last step alone.

Steps complete in order: a step is marked finished (its marker and counts in the manifest, through
the :class:`~condor.run.orchestrate.StepChain`) only after every step it reads has been, and before the
steps reading it close their inputs, so completion keys see their upstream markers as they are now.
"""

from __future__ import annotations

import asyncio
import heapq
from collections import Counter, deque
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Iterator

from condor.run.orchestrate import Tally
from condor.run.records import carried_records
from condor.run.steps import GATE_CHUNK, GateStep, ModelStep, Step
from condor.stages.base import Record

if TYPE_CHECKING:
    from condor.run.orchestrate import StepChain
    from condor.run.store import StageStore

#: Records alive in a chain before reading from the run directory pauses.
BUDGET = 4096
#: Records a gate step checks on the event loop between two turns of it (gates that are not threaded).
SLICE = 16
#: Makes the runner of a model step: (step, store, emit, priority) -> an object with
#: ``async run(inputs, total) -> StageOutcome`` and a ``progress`` (see :class:`~condor.run.local.StageRunner`).
MakeRunner = Callable[[ModelStep, "StageStore", Callable[[dict[str, Any]], None], int], Any]


def lower(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a < b else b


class Pending:
    """The ids a node holds (inbox, in flight, held): a multiset that knows its smallest member.

    Ids that left stay in the heap until they reach its top (lazy deletion); the heap is rebuilt
    from the ids still held whenever the departed outnumber them, so it never grows with the run.
    """

    def __init__(self) -> None:
        self._heap: list[str] = []
        self._count: Counter[str] = Counter()
        self.size = 0

    def add(self, key: str) -> None:
        if not self._count[key]:
            heapq.heappush(self._heap, key)
        self._count[key] += 1
        self.size += 1

    def discard(self, key: str) -> bool:
        if not self._count.get(key):
            return False
        self._count[key] -= 1
        self.size -= 1
        if not self._count[key]:
            del self._count[key]
            if len(self._heap) > 2 * len(self._count) + 64:
                self._heap = list(self._count)
                heapq.heapify(self._heap)
        return True

    def low(self) -> str | None:
        while self._heap and self._heap[0] not in self._count:
            heapq.heappop(self._heap)
        return self._heap[0] if self._heap else None


class Feed:
    """Records of a step outside the chain (or the plan), read from the run directory into one node."""

    def __init__(self, flow: "Flow", records: Iterator[Record], consumer: "Node", ordered: bool) -> None:
        self.flow, self.records, self.consumer, self.ordered = flow, records, consumer, ordered
        self.closed = False
        self.next_id: str | None = None

    def low(self) -> str | None:
        if self.closed:
            return None
        # An unsorted feed can still bring any id until it is exhausted.
        return self.next_id if self.ordered else ""

    async def run(self) -> None:
        upcoming = next(self.records, None)
        self.next_id = upcoming["id"] if upcoming is not None else None
        while upcoming is not None:
            await self.flow.room()
            record, upcoming = upcoming, next(self.records, None)
            self.next_id = upcoming["id"] if upcoming is not None else None
            self.consumer.deliver(record)
        self.closed = True
        self.consumer.producer_closed()


class Node:
    """One step of the chain: its inbox, what it holds, who feeds it and whom it feeds."""

    def __init__(self, flow: "Flow", step: Step) -> None:
        self.flow, self.step = flow, step
        self.inbox: deque[Record] = deque()
        self.pending = Pending()
        self.producers: list[Feed | Node] = []
        self.open_producers = 0
        self.record_consumers: list[Node] = []
        self.carried_consumers: list[Node] = []
        self.closed = False
        self.received = 0
        self.wake = asyncio.Event()
        self.tally = Tally()
        self.round = getattr(getattr(step, "stage", None), "round", None)

    def deliver(self, record: Record) -> None:
        self.inbox.append(record)
        self.pending.add(record["id"])
        self.received += 1
        self.flow.alive += 1
        self.flow.peak = max(self.flow.peak, self.flow.alive)
        self.wake.set()

    def producer_closed(self) -> None:
        self.open_producers -= 1
        self.wake.set()
        self.flow.changed()

    def low(self) -> str | None:
        """No id this node may still hand on is smaller than this (None: it will hand on nothing more)."""
        if self.closed:
            return None
        bound = self.pending.low()
        for producer in self.producers:
            bound = lower(bound, producer.low())
        return bound

    async def take(self) -> AsyncIterator[Record]:
        """The node's inputs as they arrive; ends when every producer has closed and the inbox is empty."""
        while True:
            while self.inbox:
                yield self.inbox.popleft()
            if not self.open_producers:
                return
            self.wake.clear()
            await self.wake.wait()

    def pass_on(self, unit: dict[str, Any]) -> None:
        """Hand a finished unit's records to the steps that read them, then let go of its input."""
        for record in unit.get("records", ()):
            for consumer in self.record_consumers:
                consumer.deliver(record)
        if self.carried_consumers:
            for record in carried_records(unit, self.step.name, self.round):
                for consumer in self.carried_consumers:
                    consumer.deliver(record)
        self.tally.add(unit)
        if self.pending.discard(unit["input_id"]):
            self.flow.alive -= 1
        self.flow.changed()

    def close(self) -> None:
        self.closed = True
        for consumer in self.record_consumers + self.carried_consumers:
            consumer.producer_closed()


class ModelNode(Node):
    runner: Any = None

    async def run(self) -> None:
        step = self.step
        assert isinstance(step, ModelStep)
        self.runner = self.flow.make_runner(step, self.flow.chain.store(step), self.pass_on, self.flow.priority(step))
        if all(isinstance(producer, Feed) for producer in self.producers):
            total = self.flow.chain.total(step)
        else:
            total = None if self.open_producers else self.received
        outcome = await self.runner.run(self.take(), total=total)
        outcome.summary = self.tally.summary()
        self.flow.chain.model_done(step, outcome)
        self.close()

    def producer_closed(self) -> None:
        super().producer_closed()
        progress = getattr(self.runner, "progress", None)
        if not self.open_producers and progress is not None and progress.total is None:
            progress.total = self.received  # known at last: the bar gets its end


class GateNode(Node):
    """A gate step: unordered gates check what is there; ordered ones wait for id order (see module doc)."""

    def __init__(self, flow: "Flow", step: GateStep) -> None:
        super().__init__(flow, step)
        self.held: list[tuple[str, int, Record]] = []
        self.arrivals = 0
        self.released: str | None = None
        #: The step's gates, fresh for this execution; built by :meth:`Flow.run` before any request.
        self.check: Callable[[list[Record]], list[dict[str, Any]]] | None = None

    async def run(self) -> None:
        step = self.step
        assert isinstance(step, GateStep)
        check = self.check if self.check is not None else await asyncio.to_thread(step.checker)
        store = self.flow.chain.store(step)
        with store.rewriter() as write:
            if step.ordered:
                await self._ordered(check, write)
            else:
                await self._as_they_come(check, write)
        self.flow.chain.gate_done(step, self.tally.summary())
        self.close()

    async def _apply(self, check: Callable, chunk: list[Record], write: Callable, whole: bool = False) -> None:
        """Check ``chunk`` and pass its units on. A threaded step (an embedding model) is checked in a
        worker thread; the others on the event loop, :data:`SLICE` records at a time with a turn of the
        loop between slices, or in one call when ``whole`` (a chunked gate's batch)."""
        if self.step.threaded:  # type: ignore[attr-defined]
            self._emit(await asyncio.to_thread(check, chunk), write)
            return
        size = len(chunk) if whole else SLICE
        for start in range(0, len(chunk), size):
            if start:
                await asyncio.sleep(0)
            self._emit(check(chunk[start : start + size]), write)

    def _emit(self, units: list[dict[str, Any]], write: Callable) -> None:
        for unit in units:
            write(unit)
            self.pass_on(unit)

    async def _as_they_come(self, check: Callable, write: Callable) -> None:
        while True:
            chunk = [self.inbox.popleft() for _ in range(min(len(self.inbox), GATE_CHUNK))]
            if chunk:
                await self._apply(check, chunk, write)
                continue
            if not self.open_producers:
                return
            self.wake.clear()
            await self.wake.wait()

    async def _ordered(self, check: Callable, write: Callable) -> None:
        # Chunked gates get exactly the chunks of a step-by-step run; the others whatever is released.
        fixed = self.step.chunked  # type: ignore[attr-defined]
        chunk: list[Record] = []
        while True:
            # Cleared first: whatever changes while a chunk is checked below wakes the next turn.
            self.wake.clear()
            while self.inbox:
                record = self.inbox.popleft()
                heapq.heappush(self.held, (record["id"], self.arrivals, record))
                self.arrivals += 1
            bound = self.upstream_low()
            while self.held and (bound is None or self.held[0][0] < bound):
                chunk.append(self._release())
                if len(chunk) == GATE_CHUNK:
                    await self._apply(check, chunk, write, whole=fixed)
                    chunk = []
            if chunk and not fixed:
                await self._apply(check, chunk, write)
                chunk = []
            if not self.open_producers and not self.inbox and not self.held:
                break
            if not self.wake.is_set():
                await self.wake.wait()
        if chunk:
            await self._apply(check, chunk, write, whole=fixed)

    def _release(self) -> Record:
        record = heapq.heappop(self.held)[2]
        if self.released is not None and record["id"] <= self.released:
            raise RuntimeError(
                f"step {self.step.name!r}: record {record['id']!r} arrived after {self.released!r} had been "
                "checked; an ordered gate needs every stage to make output ids that sort after their input's id")
        self.released = record["id"]
        return record

    def upstream_low(self) -> str | None:
        bound: str | None = None
        for producer in self.producers:
            bound = lower(bound, producer.low())
        return bound


class Flow:
    """The nodes of one chain, wired by what each step reads, and the budget of records alive."""

    def __init__(self, chain: "StepChain", make_runner: MakeRunner, budget: int = BUDGET) -> None:
        self.chain, self.make_runner, self.budget = chain, make_runner, budget
        self.nodes: dict[str, Node] = {}
        self.feeds: list[Feed] = []
        self.room_changed = asyncio.Event()
        #: Records in the chain now (in inboxes, in flight, held), and the most there ever were.
        self.alive = 0
        self.peak = 0
        models = [step for step in chain.steps if isinstance(step, ModelStep)]
        self._priority = {step.name: index for index, step in enumerate(models)}
        for step in chain.steps:
            self.nodes[step.name] = GateNode(self, step) if isinstance(step, GateStep) else ModelNode(self, step)
        for step in chain.steps:
            node = self.nodes[step.name]
            for kind, name in [("records", step.reads), *(("carried", name) for name in step.carry_from)]:
                if name in self.nodes:
                    producer = self.nodes[name]
                    (producer.record_consumers if kind == "records" else producer.carried_consumers).append(node)
                    node.producers.append(producer)
                else:
                    ordered = self.ordered_downstream(step)
                    feed = Feed(self, iter(chain.read(kind, name, ordered=ordered)), node, ordered)
                    self.feeds.append(feed)
                    node.producers.append(feed)
            node.open_producers = len(node.producers)
        self.ordered_gates = [n for n in self.nodes.values() if isinstance(n, GateNode) and n.step.ordered]  # type: ignore[attr-defined]

    def ordered_downstream(self, step: Step) -> bool:
        """Whether ``step`` or a step fed by it (at any distance) is an ordered gate."""
        todo, seen = [step.name], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            current = self.chain.step(name)
            if isinstance(current, GateStep) and current.ordered:
                return True
            todo.extend(s.name for s in self.chain.steps if s.reads == name or name in s.carry_from)
        return False

    def priority(self, step: Step) -> int:
        return self._priority.get(step.name, 0)

    def changed(self) -> None:
        """Something left a node: reading may resume, and ordered gates may release."""
        self.room_changed.set()
        for gate in self.ordered_gates:
            gate.wake.set()

    async def room(self) -> None:
        """Wait while the chain holds ``budget`` records and some of them can still move."""
        while True:
            held = sum(len(gate.held) for gate in self.ordered_gates)  # type: ignore[attr-defined]
            if self.alive < self.budget or self.alive == held:
                return
            self.room_changed.clear()
            await self.room_changed.wait()

    async def run(self) -> None:
        # Every gate is built before the first request: one that cannot be (a missing embedding model)
        # stops the run before any request is spent, and heavy imports (datasketch pulls in scipy) do
        # not compete with the requests for the interpreter. In a thread, so the display stays live.
        gates = [node for node in self.nodes.values() if isinstance(node, GateNode)]
        if gates:
            checks = await asyncio.to_thread(lambda: [node.step.checker() for node in gates])  # type: ignore[attr-defined]
            for node, check in zip(gates, checks):
                node.check = check
        tasks = [asyncio.create_task(feed.run()) for feed in self.feeds]
        tasks += [asyncio.create_task(node.run()) for node in self.nodes.values()]  # type: ignore[attr-defined]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
