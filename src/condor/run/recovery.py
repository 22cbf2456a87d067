"""The recovery ladder: what an executor does when a stage cannot parse what the model wrote.

One policy, shared by every executor. The first attempt is in text mode, or asks for the JSON schema
when the backend prefers it (``capabilities.schema_first``) or the user said ``structured: on``. When
parsing fails, the rungs are tried in order until one parses:

- after a text attempt: ``repair`` (the stage's follow-up turn quoting the bad reply), then ``schema``
  (the same request constrained to the schema), unless structured output is off or unsupported;
- after a schema attempt: ``schema-resample``, one fresh sample (the usual cause is output cut off at
  max_tokens, which a repair turn would not fix).

Once a reply parses, the step's output checks (degenerate-text gates) look at what it made. A record
that fails them is sampled again with a new seed (``resample-1``, ``resample-2``...) up to the step's
``resamples``; what still fails after that is rejected with the gate's reason, the other records of the
same reply are kept.

Every attempt's output is kept, so a rejection shows what the model wrote each time. The ladder does
not send anything itself: it is handed a ``send`` coroutine, so the local executor and the Ray
executor call models their own way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Sequence

from condor.llm.base import Capabilities, ChatRequest, Completion
from condor.filters.base import Gate
from condor.stages.base import ParseError, Record, Rejection, Stage

Send = Callable[[Sequence[ChatRequest]], Awaitable[list[Completion]]]
#: Longest text of one attempt kept on a rejection.
KEPT_OUTPUT_CHARS = 2000
#: Sample indexes below this belong to the ladder (``schema-resample`` is +1); a degenerate reply's
#: k-th resample takes ``k * RESAMPLE_STRIDE`` more, so the two never ask for the same sample.
RESAMPLE_STRIDE = 16


def _clip(text: str | None, limit: int = KEPT_OUTPUT_CHARS) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class RecoveryPolicy:
    """``structured`` is the role's setting (auto, on, off); ``capabilities`` the backend's."""

    structured: str
    capabilities: Capabilities

    def schema_first(self, stage: Stage) -> bool:
        """Whether the first attempt asks for JSON-schema output."""
        if not stage.has_schema or not self.capabilities.structured or self.structured == "off":
            return False
        return self.structured == "on" or self.capabilities.schema_first

    def rungs(self, stage: Stage, first_structured: bool) -> list[str]:
        """The attempts after a failed first one, in order."""
        if first_structured:
            return ["schema-resample"]
        rungs = ["repair"]
        if self.structured != "off" and stage.has_schema and self.capabilities.structured:
            rungs.append("schema")
        return rungs


@dataclass(frozen=True)
class OutputChecks:
    """The gates a step's outputs must pass, how many fresh samples a failure gets, and whether a
    rejection names the step's input (a carrying step passes the input on unchanged) or the output."""

    gates: Sequence[Gate] = ()
    resamples: int = 0
    reject_input: bool = False

    def split(self, record: Record, outputs: list[Record]) -> tuple[list[Record], list[Rejection]]:
        kept: list[Record] = []
        failed: list[Rejection] = []
        for output in outputs:
            verdict: Record | Rejection = output
            for gate in self.gates:
                verdict = gate.check(verdict)  # type: ignore[arg-type]
                if isinstance(verdict, Rejection):
                    break
            if isinstance(verdict, Rejection):
                failed.append(replace(verdict, record=record if self.reject_input else output))
            else:
                kept.append(verdict)
        return kept, failed


def rung_requests(
    rung: str, stage: Stage, record: Record, first: list[Completion], error: ParseError
) -> tuple[list[ChatRequest] | None, bool]:
    """The requests of one rung and whether their replies are parsed as schema output."""
    if rung == "repair":
        return stage.repair_requests(record, first, error), False
    if rung == "schema":
        return stage.requests(record, structured=True), True
    if rung == "schema-resample":
        return [replace(r, sample_index=r.sample_index + 1) for r in stage.requests(record, structured=True)], True
    raise ValueError(f"unknown recovery rung {rung!r}")


async def parse_with_recovery(
    stage: Stage,
    record: Record,
    completions: list[Completion],
    first_structured: bool,
    policy: RecoveryPolicy,
    send: Send,
    attempts: list[str],
    checks: OutputChecks = OutputChecks(),
) -> tuple[list[Record], list[Rejection]]:
    """Parse the first attempt's ``completions``; climb the ladder on failure; check what parsed.

    ``attempts`` gets the label of every attempt sent (the first one included by the caller). Returns
    the stage's output records that passed, and a :class:`Rejection` (carrying every attempt's output)
    for the input when nothing parsed, or for each output that failed the checks.
    """
    parsed, rejection, tried = await _ladder(stage, record, completions, first_structured, policy, send, attempts)
    if rejection is not None:
        return [], [rejection]
    if not checks.gates:
        return parsed, []
    best = checks.split(record, parsed)
    for k in range(1, checks.resamples + 1):
        if not best[1]:
            break
        label = f"resample-{k}"
        fresh = [replace(r, sample_index=r.sample_index + k * RESAMPLE_STRIDE)
                 for r in stage.requests(record, structured=first_structured)]
        replies = await send(fresh)
        attempts.append(label)
        if not (all(c.ok for c in replies) or stage.accepts_failures):
            continue
        try:
            outcome = checks.split(record, stage.parse(record, replies, structured=first_structured))
        except ParseError as exc:
            tried.append({"attempt": label, "reason": exc.reason, "text": [_clip(c.text) for c in replies]})
            continue
        if len(outcome[1]) < len(best[1]):
            best = outcome
    kept, failed = best
    return kept, [replace(r, outputs=tried) if tried else r for r in failed]


async def _ladder(
    stage: Stage,
    record: Record,
    completions: list[Completion],
    first_structured: bool,
    policy: RecoveryPolicy,
    send: Send,
    attempts: list[str],
) -> tuple[list[Record], Rejection | None, list[dict[str, Any]]]:
    """The parse and the repair/schema rungs: records, or the rejection; and what each attempt wrote."""
    tried: list[dict[str, Any]] = []
    error: ParseError | None = None

    def parse(batch: list[Completion], as_schema: bool, label: str) -> list[Record] | None:
        nonlocal error
        try:
            return stage.parse(record, batch, structured=as_schema)
        except ParseError as exc:
            error = exc
            tried.append({"attempt": label, "reason": exc.reason, "text": [_clip(c.text) for c in batch]})
            return None

    parsed = parse(completions, first_structured, attempts[-1])
    if parsed is not None:
        return parsed, None, tried
    for rung in policy.rungs(stage, first_structured):
        assert error is not None
        requests, as_schema = rung_requests(rung, stage, record, completions, error)
        if not requests:
            continue
        replies = await send(requests)
        attempts.append(rung)
        # A reply that failed at the backend is not parsed (unless the stage takes failures as output).
        if all(c.ok for c in replies) or stage.accepts_failures:
            parsed = parse(replies, as_schema, rung)
            if parsed is not None:
                return parsed, None, tried
    assert error is not None
    detail = "; ".join(f"{t['attempt']}: {t['reason']}" for t in tried)
    if error.detail:
        detail += f" ({error.detail})"
    return [], Rejection(stage.name, error.reason, detail, record, outputs=tried), tried
