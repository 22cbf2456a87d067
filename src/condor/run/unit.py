"""One input's work unit: what a model step does to one record, shared by every executor.

:func:`make_unit` sends the stage's requests, climbs the recovery ladder (:mod:`condor.run.recovery`)
when the reply cannot be parsed, applies the step's output checks, annotates each output with the
model, template version and token usage that made it, and returns the *unit*: the one line an executor
appends to the step's shard for this input (records, rejections, or the error). The local executor
calls it from its asyncio window; the Ray executor from inside its workers, so both write the same
units. :class:`OutageBreaker` is the other thing both share: the rule that stops a step when its
server seems down, so that an outage is never recorded as a finished step full of failures.

What it leaves out: concurrency, writing the unit, progress counters and skipping finished inputs
(the executor's), and how requests reach the model (the caller's ``send``: the backend itself, or a
batcher in front of it).
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Sequence

from condor.llm.base import BackendUnavailable, ChatRequest, Completion, LLMBackend, Usage
from condor.run.recovery import OutputChecks, RecoveryPolicy, parse_with_recovery
from condor.stages.base import Record, Rejection, Stage

log = logging.getLogger(__name__)

Send = Callable[[Sequence[ChatRequest]], Awaitable[list[Completion]]]


async def make_unit(
    stage: Stage,
    backend: LLMBackend,
    record: Record,
    digest: str,
    *,
    structured: str = "auto",
    checks: OutputChecks = OutputChecks(),
    send: Send | None = None,
    settings: str | None = None,
) -> tuple[dict[str, Any], Usage]:
    """The unit for ``record`` (whose content hash is ``digest``) and the tokens it took.

    ``structured`` is the role's setting (auto, on, off). ``send`` defaults to ``backend.generate``.
    ``settings`` (a fingerprint of the step's sampling settings) is stored with the unit, so that a
    unit made under other settings does not count as done (:meth:`~condor.run.store.StageStore.done_map`).
    Raises only :class:`BackendUnavailable`; a bug in a stage costs this one record, as a rejection.
    """
    usage = Usage()
    transport = send or backend.generate

    async def attempt(requests: Sequence[ChatRequest]) -> list[Completion]:
        completions = await transport(requests)
        for completion in completions:
            usage.add(completion)
        return completions

    # Read per record: a backend may switch structured output off mid-run (a server that turned out not
    # to obey schemas), and the ladder must stop asking for them at once.
    policy = RecoveryPolicy(structured, backend.capabilities)
    schema_first = policy.schema_first(stage)
    attempts: list[str] = []
    unit: dict[str, Any] = {"input_id": record["id"], "input_hash": digest, "records": [], "rejections": []}
    if settings:
        unit["settings"] = settings
    try:
        requests = stage.requests(record, structured=schema_first)
        completions = await attempt(requests)
        attempts.append("schema" if schema_first else "text")
        failed = [c for c in completions if not c.ok]
        if failed:
            # Marked as a failure either way, so that --retry-failed finds it again; the input is kept
            # so that the failure can be reported (and carried on) with its whole record.
            unit["error"] = failed[0].error or "no text in completion"
            if all(c.transient for c in failed):
                unit["transient"] = True
            if not stage.accepts_failures:
                unit["input"] = record
        if not failed or stage.accepts_failures:
            unit["records"], rejections = await parse_with_recovery(
                stage, record, completions, schema_first, policy, attempt, attempts, checks,
            )
            unit["rejections"].extend(r.to_dict() for r in rejections)
    except BackendUnavailable:
        raise
    except Exception as exc:  # a bug in a stage must cost one record, recorded, not the run
        log.exception("stage %s failed on %s", stage.name, record.get("id"))
        unit["records"] = []
        unit["rejections"] = [Rejection(stage.name, "internal_error", repr(exc), record).to_dict()]
    if stage.annotate:
        for out in unit["records"]:
            _annotate(out, stage, backend.identity, usage, attempts)
    unit["usage"] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens}
    return unit, usage


class OutageBreaker:
    """Counts inputs that failed at the transport level (after the backend's own retries) in a row.

    ``limit`` of them in a row means the server is down: :meth:`observe` then returns the error that
    stops the step, rather than letting the rest of the run be recorded as failures. Such units are
    sent again on the next run (they are transient), so the message says to rerun.
    """

    def __init__(self, limit: int, where: str) -> None:
        self.limit = max(1, limit)
        self.where = where
        self.streak = 0
        self.last_error: str | None = None

    def observe(self, transient: bool, error: str | None = None) -> BackendUnavailable | None:
        """Count one finished input; the error to stop with once ``limit`` failed in a row, else None."""
        self.streak = self.streak + 1 if transient else 0
        if transient:
            self.last_error = error
        return self.outage() if self.tripped else None

    @property
    def tripped(self) -> bool:
        """Whether the last ``limit`` inputs or more all failed at the transport level."""
        return self.streak >= self.limit

    def outage(self) -> BackendUnavailable:
        """The error that stops the step."""
        error = self.last_error
        return BackendUnavailable(
            f"{self.streak} requests in a row failed at {self.where} (last error: {error}); the server seems "
            "down. Finished work is saved: rerun the same command to resume, and the failed items will be sent again."
        )


def server_of(backend: LLMBackend) -> str:
    """Where ``backend`` sends its requests, for messages: its address when it has one."""
    return str(getattr(backend, "base_url", None) or backend.identity)


def _annotate(out: Record, stage: Stage, identity: str, usage: Usage, attempts: list[str]) -> None:
    out.setdefault("models", {})[stage.role] = identity
    out.setdefault("templates", {})[stage.name] = stage.version
    out.setdefault("usage", {})[stage.name] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "attempts": attempts,
    }
