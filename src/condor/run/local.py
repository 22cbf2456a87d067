"""The local executor: runs model steps on asyncio, resumably, in one process.

It owns everything a stage does not: calling the backend, the window of records in flight, the
recovery ladder (:mod:`condor.run.recovery`), writing one unit per input to the step's shard,
skipping inputs already done, token accounting and progress.

Memory stays flat in the number of inputs: records are pulled from the input iterator only as slots in
the window free up, and finished units go straight to disk. What is kept per input is its id (to skip
finished work on resume).

A backend that batches natively (``capabilities.native_batching``) is handed the requests of many
records at once through a :class:`~condor.run.batching.RequestBatcher`; any other backend is called
per record, with up to ``window`` records in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, AsyncIterable, AsyncIterator, Callable, Iterable, Sequence

from condor.llm.base import ChatRequest, Completion, LLMBackend, Usage
from condor.llm.settings import settings_key
from condor.run.batching import RequestBatcher
from condor.run.executor import Executor, StageOutcome
from condor.run.progress import ProgressBoard, StageProgress
from condor.run.recovery import OutputChecks
from condor.run.steps import ModelStep
from condor.run.store import FAILED, STALE, TRANSIENT, RunStoreError, StageStore, record_hash
from condor.run.unit import OutageBreaker, make_unit, server_of
from condor.stages.base import Record, Stage

if TYPE_CHECKING:
    from condor.run.orchestrate import StepChain

__all__ = ["LocalExecutor", "StageOutcome", "StageRunner"]


async def _each(inputs: Iterable[Record] | AsyncIterable[Record]) -> AsyncIterator[Record]:
    if isinstance(inputs, AsyncIterable):
        async for record in inputs:
            yield record
    else:
        for record in inputs:
            yield record


class StageRunner:
    """Runs ``stage`` with ``backend`` into ``store``. One instance per stage execution."""

    def __init__(
        self,
        stage: Stage,
        backend: LLMBackend,
        store: StageStore,
        *,
        structured: str = "auto",
        window: int | None = None,
        board: ProgressBoard | None = None,
        retry_failed: bool = False,
        outage_after: int | None = None,
        collect_hashes: bool = False,
        checks: OutputChecks = OutputChecks(),
        emit: Callable[[dict[str, Any]], None] | None = None,
        plain: bool = False,
        priority: int = 0,
        settings_key: str | None = None,
    ) -> None:
        self.stage = stage
        # Stored with each unit: a unit made under other sampling settings is not done (provenance).
        self.settings_key = settings_key
        self.backend = backend
        self.store = store
        self.structured = structured
        self.checks = checks
        caps = backend.capabilities
        self.window = window or max(4, backend.concurrency * 2, caps.max_batch if caps.native_batching else 0)
        self.batcher = RequestBatcher(backend, caps.max_batch) if caps.native_batching else None
        self.board = board or ProgressBoard(quiet=True)
        self.retry_failed = retry_failed
        # Off for batch generation: it needs no record of its inputs, and memory must not grow with them.
        self.collect_hashes = collect_hashes
        #: Called with every unit of this execution, new or resumed from the store (streaming executors
        #: hand its records on to the next step).
        self.emit = emit
        #: Leave the store plain at the end: one unit per input of this execution, units of inputs that
        #: are gone and units superseded dropped, so that readers need no index of the step's inputs.
        self.plain = plain
        #: Requests of an earlier step in a pipeline get a server slot first (see ChatRequest.priority).
        self.priority = priority
        # This many inputs in a row failing at the transport level (after the backend's own retries)
        # means the server is down: stop, rather than record the whole rest of the run as failures.
        self.outage_after = outage_after or max(32, self.window)

    async def _send(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        send = self.batcher.generate if self.batcher is not None else self.backend.generate
        for request in requests:  # fresh objects from the stage: marking them costs less than copying
            request.priority = self.priority
        return await send(requests)

    async def _process(self, record: Record, digest: str) -> tuple[dict[str, Any], Usage]:
        return await make_unit(
            self.stage, self.backend, record, digest, structured=self.structured, checks=self.checks, send=self._send,
            settings=self.settings_key,
        )

    async def run(self, inputs: Iterable[Record] | AsyncIterable[Record], total: int | None = None) -> StageOutcome:
        started = time.monotonic()
        self.store.open()
        # Units that failed at the transport level are sent again: this executor only runs an unfinished
        # stage (or one the user asked to retry), and such failures usually mean the server was down.
        shards = self.store.shard_paths()
        existing = self.store.latest_index(self.settings_key)
        redo = (FAILED, TRANSIENT, STALE) if self.retry_failed else (TRANSIENT, STALE)
        superseded = False
        outcome = StageOutcome(self.stage.name)
        self.progress = progress = StageProgress(self.stage.name, total, resumed=0)
        pending: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(self.window)
        fatal: list[BaseException] = []
        breaker = OutageBreaker(self.outage_after, server_of(self.backend))

        def finished(task: asyncio.Task) -> None:
            pending.discard(task)
            progress.end(task)
            slots.release()
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                fatal.append(exc)
                return
            unit, usage = task.result()
            try:
                self.store.append(unit)
            except (OSError, ValueError, TypeError) as exc:
                # A unit that cannot be written (disk full, say) must stop the run: carrying on would
                # mark the stage complete without it.
                fatal.append(RunStoreError(f"cannot write to {self.store.units_path}: {exc}"))
                return
            outage = breaker.observe(bool(unit.get("transient")), unit.get("error"))
            if outage is not None:
                fatal.append(outage)
            outcome.count(progress, records=len(unit["records"]), rejections=len(unit["rejections"]),
                          failed=bool(unit.get("error")), usage=usage)
            if self.emit is not None:
                self.emit(unit)

        with self.board.track(progress):
            tick = asyncio.create_task(self.board.redraw())
            try:
                async for record in _each(inputs):
                    outcome.inputs += 1
                    digest = record_hash(record)
                    if self.collect_hashes:
                        outcome.input_hashes[record["id"]] = digest
                    # Done means done for this very content: an input that changed upstream (a retried
                    # refinement, say) is processed again, and its new unit supersedes the old one.
                    entry = existing.pop(record["id"], None) if self.plain else existing.get(record["id"])
                    if entry is not None and entry[1] not in redo and entry[0] in (digest, None):
                        outcome.resumed += 1
                        progress.resumed += 1
                        if self.emit is not None:
                            self.emit(self.store.read_at(shards[entry[2]], entry[3]))
                        continue
                    superseded = superseded or entry is not None
                    await slots.acquire()
                    if fatal:
                        break
                    task = asyncio.create_task(self._process(record, digest))
                    pending.add(task)
                    progress.begin(task)
                    task.add_done_callback(finished)
                while pending and not fatal:
                    await asyncio.wait(set(pending), return_when=asyncio.FIRST_COMPLETED)
            finally:
                if fatal or pending:
                    for task in list(pending):
                        task.cancel()
                    with contextlib.suppress(BaseException):
                        await asyncio.gather(*pending, return_exceptions=True)
                tick.cancel()
                self.store.close()
                if self.batcher is not None:
                    await self.batcher.aclose()
        if fatal:
            raise fatal[0]
        if self.plain:
            # What is left in ``existing`` belongs to inputs that are gone (an upstream gate redone
            # with other settings): their units leave with the superseded ones.
            if existing or superseded or len(shards) > 1:
                self.store.compact(frozenset(existing))
            outcome.plain = True
        outcome.models[self.stage.role] = self.backend.describe()
        outcome.seconds = time.monotonic() - started
        return outcome


class LocalExecutor(Executor):
    """Runs each model step with :class:`StageRunner` and the backend of the stage's role.

    ``structured`` maps each role to its ``structured`` setting (auto, on, off).
    """

    def __init__(
        self,
        backends: dict[str, LLMBackend],
        *,
        structured: dict[str, str] | None = None,
        board: ProgressBoard | None = None,
        retry_failed: bool = False,
        window: int | None = None,
        owns_backends: bool = False,
    ) -> None:
        self.backends = backends
        #: Close the backends in :meth:`aclose` (when this executor was handed them to keep).
        self.owns_backends = owns_backends
        self.structured = structured or {}
        self.board = board or ProgressBoard(quiet=True)
        self.retry_failed = retry_failed
        self.window = window

    def model_of(self, role: str) -> str:
        return self.backends[role].identity

    def runner(self, step: ModelStep, store: StageStore, emit=None, priority: int = 0) -> StageRunner:
        """The runner of one execution of ``step``: it leaves the store plain (one unit per input)."""
        assert step.stage is not None
        role = step.stage.role
        return StageRunner(
            step.stage,
            self.backends[role],
            store,
            structured=self.structured.get(role, "auto"),
            window=self.window,
            board=self.board,
            retry_failed=self.retry_failed,
            checks=OutputChecks(step.checks, step.resamples, reject_input=step.carries),
            emit=emit,
            plain=True,
            priority=priority,
            settings_key=settings_key(step.settings),
        )

    async def run(self, step: ModelStep, inputs: Iterable[Record], store: StageStore, *, total: int | None) -> StageOutcome:
        assert step.stage is not None
        return await self.runner(step, store).run(inputs, total=total)

    async def run_chain(self, chain: "StepChain") -> None:
        """Stream the chain's records from step to step (:mod:`condor.run.flow`)."""
        from condor.run.flow import Flow

        await Flow(chain, self.runner).run()

    async def aclose(self) -> None:
        if self.owns_backends:
            from condor.llm.registry import close_backends

            await close_backends(self.backends)
