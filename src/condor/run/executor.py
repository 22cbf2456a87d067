"""The local executor: runs one stage over a stream of records on asyncio, resumably.

It owns everything a stage does not: calling the backend, the window of records in flight, the repair
attempt and the schema-constrained fallback when parsing fails, writing one unit per input to the stage's
shard, skipping inputs already done, token accounting and progress.

Memory stays flat in the number of inputs: records are pulled from the input iterator only as slots in
the window free up, and finished units go straight to disk. What is kept per input is its id (to skip
finished work on resume).

Structured output (JSON schema) is decided per stage from the backend's ``structured`` mode:
``on`` asks for a schema from the first attempt; ``off`` never; ``auto`` starts in text mode and falls
back to the schema after the repair attempt fails, except on the embedded backend, where constrained
decoding is local and free and a small model needs it, so ``auto`` means schema first there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Iterable

from condor.llm.base import BackendUnavailable, Completion, LLMBackend, Usage
from condor.run.progress import ProgressBoard, StageProgress
from condor.run.store import RunStoreError, StageStore, record_hash
from condor.stages.base import ParseError, Record, Rejection, Stage

log = logging.getLogger(__name__)


@dataclass
class StageOutcome:
    """What one execution of a stage did; merged into the manifest."""

    stage: str
    inputs: int = 0
    resumed: int = 0
    records: int = 0
    rejections: int = 0
    failures: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    #: ``{input_id: content hash}`` of every input seen (with ``collect_hashes``), so callers need not
    #: hash the inputs again.
    input_hashes: dict[str, str] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "resumed": self.resumed,
            "records": self.records,
            "rejections": self.rejections,
            "failures": self.failures,
            "usage": self.usage.as_dict(),
            "seconds": round(self.seconds, 3),
        }


def _clip(text: str | None, limit: int = 2000) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + "..."


def schema_first(mode: str, stage: Stage, backend: LLMBackend) -> bool:
    """Whether the first attempt of ``stage`` asks for JSON-schema output."""
    if not stage.has_schema or not backend.supports_schema or mode == "off":
        return False
    if mode == "on":
        return True
    return backend.identity.startswith("embedded:")


def schema_fallback(mode: str, stage: Stage, backend: LLMBackend) -> bool:
    return mode != "off" and stage.has_schema and backend.supports_schema


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
    ) -> None:
        self.stage = stage
        self.backend = backend
        self.store = store
        self.structured = structured
        self.window = window or max(4, backend.concurrency * 2)
        self.board = board or ProgressBoard(quiet=True)
        self.retry_failed = retry_failed
        # Off for batch generation: it needs no record of its inputs, and memory must not grow with them.
        self.collect_hashes = collect_hashes
        # This many inputs in a row failing at the transport level (after the backend's own retries)
        # means the server is down: stop, rather than record the whole rest of the run as failures.
        self.outage_after = outage_after or max(32, self.window)

    async def _attempt(self, requests, usage: Usage) -> list[Completion]:
        completions = await self.backend.generate(requests)
        for completion in completions:
            usage.add(completion)
        return completions

    async def _process(self, record: Record, progress: StageProgress, digest: str) -> dict[str, Any]:
        stage, usage = self.stage, Usage()
        structured = schema_first(self.structured, stage, self.backend)
        attempts: list[str] = []
        unit: dict[str, Any] = {"input_id": record["id"], "input_hash": digest, "records": [], "rejections": []}
        try:
            requests = stage.requests(record, structured=structured)
            completions = await self._attempt(requests, usage)
            attempts.append("schema" if structured else "text")
            failed = [c for c in completions if not c.ok]
            if failed:
                # Marked as a failure either way, so that --retry-failed finds it again; the input is
                # kept so that the failure can be reported (and carried on) with its whole record.
                unit["error"] = failed[0].error or "no text in completion"
                if all(c.transient for c in failed):
                    unit["transient"] = True
                if not stage.accepts_failures:
                    unit["input"] = record
            if not failed or stage.accepts_failures:
                unit["records"], rejection = await self._parse_with_recovery(
                    record, completions, structured, usage, attempts
                )
                if rejection is not None:
                    unit["rejections"].append(rejection.to_dict())
        except BackendUnavailable:
            raise
        except Exception as exc:  # a bug in a stage must cost one record, recorded, not the run
            log.exception("stage %s failed on %s", stage.name, record.get("id"))
            unit["records"] = []
            unit["rejections"] = [Rejection(stage.name, "internal_error", repr(exc), record).to_dict()]
        if stage.annotate:
            for out in unit["records"]:
                self._annotate(out, usage, attempts)
        unit["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
        progress.requests += usage.requests - usage.cached
        progress.tokens += usage.completion_tokens
        progress.retries += usage.retries
        progress.failures += 1 if unit.get("error") else 0
        progress.rejections += len(unit["rejections"])
        self._usage.merge(usage)
        return unit

    async def _parse_with_recovery(
        self, record: Record, completions: list[Completion], structured: bool, usage: Usage, attempts: list[str]
    ) -> tuple[list[Record], Rejection | None]:
        """Parse; on failure try the stage's repair, then the schema; else a rejection with every output.

        When the first attempt already used the schema, the usual cause of failure is output cut off at
        max_tokens, which a repair turn would not fix: one fresh sample is drawn instead.
        """
        stage = self.stage
        tried: list[dict[str, Any]] = []

        def parse(batch: list[Completion], as_schema: bool, label: str) -> list[Record] | None:
            nonlocal error
            try:
                return stage.parse(record, batch, structured=as_schema)
            except ParseError as exc:
                error = exc
                tried.append({"attempt": label, "reason": exc.reason, "text": [_clip(c.text) for c in batch]})
                return None

        error: ParseError | None = None
        parsed = parse(completions, structured, attempts[-1])
        if parsed is not None:
            return parsed, None
        if structured:
            fresh = [replace(r, sample_index=r.sample_index + 1) for r in stage.requests(record, structured=True)]
            retried = await self._attempt(fresh, usage)
            attempts.append("schema-resample")
            if all(c.ok for c in retried) or stage.accepts_failures:
                parsed = parse(retried, True, "schema-resample")
                if parsed is not None:
                    return parsed, None
        else:
            repair = stage.repair_requests(record, completions, error)  # type: ignore[arg-type]
            if repair:
                repaired = await self._attempt(repair, usage)
                attempts.append("repair")
                if all(c.ok for c in repaired) or stage.accepts_failures:
                    parsed = parse(repaired, False, "repair")
                    if parsed is not None:
                        return parsed, None
            if schema_fallback(self.structured, stage, self.backend):
                constrained = await self._attempt(stage.requests(record, structured=True), usage)
                attempts.append("schema")
                if all(c.ok for c in constrained) or stage.accepts_failures:
                    parsed = parse(constrained, True, "schema")
                    if parsed is not None:
                        return parsed, None
        assert error is not None
        detail = "; ".join(f"{t['attempt']}: {t['reason']}" for t in tried)
        if error.detail:
            detail += f" ({error.detail})"
        return [], Rejection(stage.name, error.reason, detail, record, outputs=tried)

    def _annotate(self, out: Record, usage: Usage, attempts: list[str]) -> None:
        stage = self.stage
        out.setdefault("models", {})[stage.role] = self.backend.identity
        out.setdefault("templates", {})[stage.name] = stage.version
        out.setdefault("usage", {})[stage.name] = {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "attempts": attempts,
        }

    async def run(self, inputs: Iterable[Record], total: int | None = None) -> StageOutcome:
        started = time.monotonic()
        self._usage = Usage()
        self.store.open()
        # Units that failed at the transport level are sent again: this executor only runs an unfinished
        # stage (or one the user asked to retry), and such failures usually mean the server was down.
        done = self.store.done_map(include_failed=not self.retry_failed, include_transient=False)
        outcome = StageOutcome(self.stage.name)
        progress = StageProgress(self.stage.name, total, resumed=0)
        pending: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(self.window)
        fatal: list[BaseException] = []
        streak = [0]  # consecutive transport failures (a list so the callback can update it)

        def finished(task: asyncio.Task) -> None:
            pending.discard(task)
            slots.release()
            if task.cancelled():
                return
            exc = task.exception()
            if exc is not None:
                fatal.append(exc)
                return
            unit = task.result()
            try:
                self.store.append(unit)
            except (OSError, ValueError, TypeError) as exc:
                # A unit that cannot be written (disk full, say) must stop the run: carrying on would
                # mark the stage complete without it.
                fatal.append(RunStoreError(f"cannot write to {self.store.units_path}: {exc}"))
                return
            streak[0] = streak[0] + 1 if unit.get("transient") else 0
            if streak[0] >= self.outage_after:
                fatal.append(BackendUnavailable(
                    f"{streak[0]} requests in a row failed at {self.backend.identity.split(':', 1)[-1]} "
                    f"(last error: {unit.get('error')}); the server seems down. Finished work is saved: "
                    "rerun the same command to resume, and the failed items will be sent again."
                ))
            progress.done += 1
            outcome.records += len(unit["records"])
            outcome.rejections += len(unit["rejections"])
            outcome.failures += 1 if unit.get("error") else 0

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.25)
                self.board.refresh()

        with self.board.track(progress):
            tick = asyncio.create_task(ticker())
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
                    task = asyncio.create_task(self._process(record, progress, digest))
                    pending.add(task)
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
        if fatal:
            raise fatal[0]
        outcome.usage = self._usage
        outcome.seconds = time.monotonic() - started
        return outcome


async def run_stage(
    stage: Stage,
    inputs: Iterable[Record],
    store: StageStore,
    backend: LLMBackend,
    **options: Any,
) -> StageOutcome:
    """Convenience wrapper: ``StageRunner(stage, backend, store, **options).run(inputs, total)``."""
    total = options.pop("total", None)
    return await StageRunner(stage, backend, store, **options).run(inputs, total=total)
