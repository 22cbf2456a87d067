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
from typing import Any, Iterable, Sequence

from condor.llm.base import ChatRequest, Completion, LLMBackend, Usage
from condor.llm.settings import settings_key
from condor.run.batching import RequestBatcher
from condor.run.executor import Executor, StageOutcome
from condor.run.progress import ProgressBoard, StageProgress
from condor.run.recovery import OutputChecks
from condor.run.steps import ModelStep
from condor.run.store import RunStoreError, StageStore, record_hash
from condor.run.unit import OutageBreaker, make_unit, server_of
from condor.stages.base import Record, Stage

__all__ = ["LocalExecutor", "StageOutcome", "StageRunner"]


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
        # This many inputs in a row failing at the transport level (after the backend's own retries)
        # means the server is down: stop, rather than record the whole rest of the run as failures.
        self.outage_after = outage_after or max(32, self.window)

    async def _send(self, requests: Sequence[ChatRequest]) -> list[Completion]:
        send = self.batcher.generate if self.batcher is not None else self.backend.generate
        return await send(requests)

    async def _process(self, record: Record, digest: str) -> tuple[dict[str, Any], Usage]:
        return await make_unit(
            self.stage, self.backend, record, digest, structured=self.structured, checks=self.checks, send=self._send,
            settings=self.settings_key,
        )

    async def run(self, inputs: Iterable[Record], total: int | None = None) -> StageOutcome:
        started = time.monotonic()
        self.store.open()
        # Units that failed at the transport level are sent again: this executor only runs an unfinished
        # stage (or one the user asked to retry), and such failures usually mean the server was down.
        done = self.store.done_map(include_failed=not self.retry_failed, include_transient=False,
                                   settings=self.settings_key)
        outcome = StageOutcome(self.stage.name)
        progress = StageProgress(self.stage.name, total, resumed=0)
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

        with self.board.track(progress):
            tick = asyncio.create_task(self.board.redraw())
            try:
                for record in inputs:
                    outcome.inputs += 1
                    digest = record_hash(record)
                    if self.collect_hashes:
                        outcome.input_hashes[record["id"]] = digest
                    # Done means done for this very content: an input that changed upstream (a retried
                    # refinement, say) is processed again, and its new unit supersedes the old one.
                    if record["id"] in done and done[record["id"]] in (digest, None):
                        outcome.resumed += 1
                        progress.resumed += 1
                        continue
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

    async def run(self, step: ModelStep, inputs: Iterable[Record], store: StageStore, *, total: int | None) -> StageOutcome:
        assert step.stage is not None
        role = step.stage.role
        runner = StageRunner(
            step.stage,
            self.backends[role],
            store,
            structured=self.structured.get(role, "auto"),
            window=self.window,
            board=self.board,
            retry_failed=self.retry_failed,
            collect_hashes=True,
            checks=OutputChecks(step.checks, step.resamples, reject_input=step.carries),
            settings_key=settings_key(step.settings),
        )
        outcome = await runner.run(inputs, total=total)
        outcome.models[role] = self.backends[role].describe()
        return outcome

    async def aclose(self) -> None:
        if self.owns_backends:
            from condor.llm.registry import close_backends

            await close_backends(self.backends)
