"""The gates of the default pipeline: question quality, near duplicates, answer quality, selection.

Each wraps a check that lives in its own module (:mod:`~condor.filters.quality`,
:mod:`~condor.filters.dedup`, :mod:`~condor.stages.select`) so that it can be put in a step list.
"""

from __future__ import annotations

from typing import Any

from condor.filters.base import Gate
from condor.filters.dedup import Deduplicator
from condor.filters.quality import QualityFilter
from condor.stages.base import Record, Rejection
from condor.stages.select import select_version


class _QualityGate(Gate):
    """A :class:`QualityFilter` check of one field; subclasses say which."""

    ordered = False
    chunked = False
    threaded = False

    def __init__(self, quality: QualityFilter) -> None:
        self.quality = quality

    @property
    def settings(self) -> Any:
        return [self.quality.min_chars, self.quality.max_chars]

    def issue(self, record: Record):
        raise NotImplementedError

    def check(self, record: Record) -> Record | Rejection:
        issue = self.issue(record)
        return record if issue is None else Rejection(self.name, issue.reason, issue.detail, record)


class QuestionQuality(_QualityGate):
    """Length, truncation and language of the question."""

    name = "question_quality"

    def issue(self, record: Record):
        return self.quality.question_issue(record)


class AnswerQuality(_QualityGate):
    """Empty, short, long, cut-off, refusing or wrong-language answers."""

    name = "answer_quality"

    def issue(self, record: Record):
        return self.quality.answer_issue(record)


class NearDuplicates(Gate):
    """Exact and MinHash near-duplicate questions: the first one (in id order) is kept."""

    name = "near_duplicates"
    chunked = False  # ordered (the index is state), but one record at a time: batches do not matter
    across_records = True
    threaded = False

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._dedup: Deduplicator | None = None

    @property
    def settings(self) -> Any:
        # The sketch's base hash is part of what decides: a step finished with another one is redone.
        return [self.threshold, "crc32"]

    def fresh(self) -> "NearDuplicates":
        gate = NearDuplicates(self.threshold)
        gate._dedup = Deduplicator(threshold=self.threshold)
        return gate

    def check(self, record: Record) -> Record | Rejection:
        if self._dedup is None:
            self._dedup = Deduplicator(threshold=self.threshold)
        duplicate = self._dedup.check(record["id"], record["question"])
        return record if duplicate is None else Rejection(self.name, duplicate.reason, duplicate.detail, record)


class SelectVersion(Gate):
    """Choose the version that goes into the dataset, then check it once more.

    A chosen refinement that fails the final check is replaced by the original answer (noted in
    ``chosen``); a record whose every candidate fails is rejected.
    """

    name = "select"
    ordered = False
    chunked = False
    threaded = False

    def __init__(self, mode: str, quality: QualityFilter) -> None:
        self.mode = mode
        self.quality = quality

    @property
    def settings(self) -> Any:
        return [self.mode, self.quality.min_chars, self.quality.max_chars]

    def check(self, record: Record) -> Record | Rejection:
        try:
            chosen = select_version(record, self.mode)  # type: ignore[arg-type]
        except ValueError as exc:
            return Rejection(self.name, "no_versions", str(exc), record)
        issue = self.quality.answer_issue(chosen)
        if issue is not None and chosen["chosen"]["version"] != 0:
            reason = f"version {chosen['chosen']['version']} failed the final check ({issue.reason}); kept the original"
            chosen = {**record, "chosen": {"version": 0, "mode": self.mode, "fallback": True, "reason": reason},
                      "answer": record["versions"][0]["answer"]}
            issue = self.quality.answer_issue(chosen)
        return chosen if issue is None else Rejection(self.name, issue.reason, issue.detail, record)
