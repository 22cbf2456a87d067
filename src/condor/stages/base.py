"""What a pipeline stage is: pure prompt building and parsing, no I/O.

A stage turns one input record into chat requests, and the completions of those requests into zero or
more output records. It never calls a model, touches a file or sleeps: the executor
(:mod:`condor.run.executor`) does all of that, which is why every stage can be tested with strings.

Records are plain JSON-able dicts with a unique ``"id"``; a stage copies what it reads and adds what it
writes, so a record carries its whole history. When model output cannot be used, ``parse`` raises
:class:`ParseError` with a short machine-readable ``reason``; the executor then tries the stage's repair
request, then the schema-constrained variant, and finally records a :class:`Rejection`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from condor.llm.base import ChatRequest, Completion

Record = dict[str, Any]


class ParseError(ValueError):
    """Model output that a stage cannot use. ``reason`` is a short slug (``missing_markers``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class Rejection:
    """An input that produced no output, with the reason; written beside the records, never dropped."""

    stage: str
    reason: str
    detail: str = ""
    record: Record = field(default_factory=dict)
    #: What the model wrote on each attempt (text, repair, schema), so a rejection can be inspected.
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {"stage": self.stage, "reason": self.reason, "detail": self.detail, "record": self.record}
        if self.outputs:
            out["outputs"] = self.outputs
        return out


class Stage(ABC):
    """One step of the pipeline. Subclasses set ``name``, ``version`` and ``role`` and implement two methods.

    ``role`` picks which configured model serves the stage (question_writer, answerer, critic, refiner,
    judge). ``version`` changes whenever prompts or parsing change, and is written into every record.
    ``accepts_failures``: when true, completions that failed at the backend are passed to ``parse``
    (batch generation records them as output); otherwise the executor rejects the record itself.
    """

    name: str = "stage"
    version: str = "1"
    role: str = "answerer"
    accepts_failures: bool = False
    #: Whether ``requests(..., structured=True)`` asks for JSON output with a schema.
    has_schema: bool = False
    #: Whether the executor adds ``models``, ``templates`` and per-stage ``usage`` to output records
    #: (pipeline records carry their history; flat outputs such as batch generation do not).
    annotate: bool = True

    @abstractmethod
    def requests(self, record: Record, *, structured: bool = False) -> list[ChatRequest]:
        """The chat requests this record needs (usually one)."""

    @abstractmethod
    def parse(self, record: Record, completions: list[Completion], *, structured: bool = False) -> list[Record]:
        """Build output records from the completions, or raise :class:`ParseError`."""

    def repair_requests(
        self, record: Record, completions: list[Completion], error: ParseError
    ) -> list[ChatRequest] | None:
        """Requests for one repair attempt after a parse failure, or None when the stage has none."""
        return None
