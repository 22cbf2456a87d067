"""Gates over what a model step just wrote: degenerate questions, answers, critiques and refinements.

They run as a model step's output checks (:class:`~condor.run.steps.ModelStep` ``checks``), so a
degenerate reply is sampled again before anything is rejected; see :mod:`condor.filters.degenerate`
for the detectors. Reasons are prefixed with what failed: ``question_loop``, ``answer_placeholder``,
``critique_thin_critique``, ``refinement_collapse``, ``refinement_echo_of_original``.
"""

from __future__ import annotations

from typing import Any

from condor.filters.base import Gate
from condor.filters.degenerate import Finding, collapse, degenerate, echo, list_fragment, thin
from condor.stages.base import Record, Rejection

CRITIQUE_FIELDS = ("strengths", "weaknesses", "suggestions")


def _latest(record: Record, field: str) -> dict[str, Any]:
    items = record.get(field) or []
    return items[-1] if items and isinstance(items[-1], dict) else {}


class _TextGate(Gate):
    threaded = False
    prefix = ""
    ordered = False
    chunked = False

    def _reject(self, record: Record, finding: Finding) -> Rejection:
        return Rejection(self.name, f"{self.prefix}_{finding.reason}", f"{self.prefix}: {finding.detail}", record)


class DegenerateQuestion(_TextGate):
    """A question that is a template leftover, a label, a loop, or only its own tag."""

    name, prefix = "degenerate_question", "question"

    def check(self, record: Record) -> Record | Rejection:
        question = record.get("question") or ""
        finding = degenerate(question) or list_fragment(question)
        tag_path = [str(part) for part in record.get("tag_path") or () if part]
        # The leaf alone, or the whole path written out ("Domain > Topic > Leaf") in place of a request.
        for source in (tag_path[-1:] + [" > ".join(tag_path)]) if finding is None and tag_path else ():
            finding = echo(question, source, "tag")
            if finding is not None:
                break
        return record if finding is None else self._reject(record, finding)


class DegenerateAnswer(_TextGate):
    """The latest answer version: degenerate text, or the question given back."""

    name, prefix = "degenerate_answer", "answer"

    def check(self, record: Record) -> Record | Rejection:
        answer = _latest(record, "versions").get("answer") or ""
        finding = degenerate(answer) or echo(answer, record.get("question") or "", "question")
        return record if finding is None else self._reject(record, finding)


class DegenerateCritique(_TextGate):
    """The latest critique: a field with no substance, all fields alike, or degenerate text."""

    name, prefix = "degenerate_critique", "critique"

    def check(self, record: Record) -> Record | Rejection:
        critique = _latest(record, "critiques")
        fields = {name: str(critique.get(name) or "") for name in CRITIQUE_FIELDS}
        for name, text in fields.items():
            finding = thin(text, name) or degenerate(text)
            if finding is not None:
                return self._reject(record, finding)
        if len({" ".join(text.casefold().split()) for text in fields.values()}) == 1:
            return self._reject(record, Finding("thin_critique", "strengths, weaknesses and suggestions are the same text"))
        return record


class DegenerateRefinement(_TextGate):
    """The new version against the one it replaces: degenerate, unchanged, the question, or collapsed."""

    name, prefix = "degenerate_refinement", "refinement"

    def __init__(self, collapse_ratio: float = 0.4) -> None:
        self.collapse_ratio = collapse_ratio

    @property
    def settings(self) -> Any:
        return self.collapse_ratio

    def check(self, record: Record) -> Record | Rejection:
        versions = record.get("versions") or []
        if len(versions) < 2:
            return record
        new, old = versions[-1].get("answer") or "", versions[-2].get("answer") or ""
        critique = _latest(record, "critiques")
        asked = " ".join(str(critique.get(name) or "") for name in ("weaknesses", "suggestions"))
        finding = (
            degenerate(new)
            or echo(new, old, "original", threshold=0.95, reword=None)
            or echo(new, record.get("question") or "", "question")
            or collapse(new, old, asked, ratio=self.collapse_ratio)
        )
        return record if finding is None else self._reject(record, finding)
