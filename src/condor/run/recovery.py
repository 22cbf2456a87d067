"""The recovery ladder: what an executor does when a stage cannot parse what the model wrote.

One policy, shared by every executor. The first attempt is in text mode, or asks for the JSON schema
when the backend prefers it (``capabilities.schema_first``) or the user said ``structured: on``. When
parsing fails, the rungs are tried in order until one parses:

- after a text attempt: ``repair`` (the stage's follow-up turn quoting the bad reply), then ``schema``
  (the same request constrained to the schema), unless structured output is off or unsupported;
- after a schema attempt: ``schema-resample``, one fresh sample (the usual cause is output cut off at
  max_tokens, which a repair turn would not fix).

Every attempt's output is kept, so a rejection shows what the model wrote each time. The ladder does
not send anything itself: it is handed a ``send`` coroutine, so the local executor and the Ray
executor call models their own way.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Sequence

from condor.llm.base import Capabilities, ChatRequest, Completion
from condor.stages.base import ParseError, Record, Rejection, Stage

Send = Callable[[Sequence[ChatRequest]], Awaitable[list[Completion]]]
#: Longest text of one attempt kept on a rejection.
KEPT_OUTPUT_CHARS = 2000


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
) -> tuple[list[Record], Rejection | None]:
    """Parse the first attempt's ``completions``; climb the ladder on failure.

    ``attempts`` gets the label of every attempt sent (the first one included by the caller). Returns
    the stage's output records, or no records and a :class:`Rejection` carrying every attempt's output.
    """
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
        return parsed, None
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
                return parsed, None
    assert error is not None
    detail = "; ".join(f"{t['attempt']}: {t['reason']}" for t in tried)
    if error.detail:
        detail += f" ({error.detail})"
    return [], Rejection(stage.name, error.reason, detail, record, outputs=tried)
