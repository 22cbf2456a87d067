"""Reading judge results back from a run directory, with no backend: for export, the report and the CLI.

``condor judge --in RUN`` leaves its steps in the run itself (``judge_grade``: a 1-10 grade of every
answer version; ``judge_pairs`` and ``judge_pairwise``: the original answer against the final one, in
both orders); ``condor judge --a X --b Y -o OUT`` makes a judge run with ``pairs`` and ``pairwise``.
Both write ``judge.json``, the summary. Results count only where the judged text is still the text of
the run: a record redone since it was judged is treated as not judged, never given a stale verdict.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from condor.judge.stats import GradeStats, PairOutcome, PairwiseStats, grade_stats, pairwise_stats
from condor.run.records import RunReader
from condor.stages.base import Record

GRADE_STEP, PAIRS_STEP, PAIRWISE_STEP = "judge_grade", "judge_pairs", "judge_pairwise"
COMPARE_PAIRS, COMPARE_STEP = "pairs", "pairwise"
SUMMARY_FILE = "judge.json"
SUMMARY_FORMAT = "condor-judge v1"


def step_records(reader: RunReader, name: str) -> list[Record] | None:
    """The records of a finished step, or None when the run has no such finished step."""
    if name not in reader.steps or not reader.is_complete(name):
        return None
    return list(reader.records(name))


def valid_scores(record: Record) -> dict[int, float]:
    """``{version: score}`` of a record's usable grades (the first grade of a version counts)."""
    count = len(record.get("versions") or [])
    out: dict[int, float] = {}
    for entry in record.get("scores") or []:
        if not isinstance(entry, dict):
            continue
        version, score = entry.get("version"), entry.get("score")
        if isinstance(version, bool) or isinstance(score, bool):
            continue
        if isinstance(version, int) and 0 <= version < count and isinstance(score, (int, float)) and 1 <= score <= 10:
            out.setdefault(version, float(score))
    return out


def final_index(record: Record) -> int:
    chosen = record.get("chosen") or {}
    index = chosen.get("version")
    return index if isinstance(index, int) else max(0, len(record.get("versions") or []) - 1)


def _answers(record: Record) -> list[str | None]:
    return [v.get("answer") for v in record.get("versions") or []]


class JudgeIndex:
    """The judge's results for the records of one run, matched by id and by the text that was judged."""

    def __init__(self, reader: RunReader) -> None:
        self.reader = reader
        self.graded = {r["id"]: r for r in step_records(reader, GRADE_STEP) or []}
        self.compared = {r["id"]: r for r in step_records(reader, PAIRWISE_STEP) or []}
        self.has_grades = GRADE_STEP in reader.steps and reader.is_complete(GRADE_STEP)
        self.has_pairwise = PAIRWISE_STEP in reader.steps and reader.is_complete(PAIRWISE_STEP)

    def scores(self, record: Record) -> dict[int, float]:
        """Grades of ``record``'s versions: ``condor judge``'s when they are current, else the pipeline's own."""
        graded = self.graded.get(record["id"])
        if graded is not None and _answers(graded) == _answers(record):
            return valid_scores(graded)
        return valid_scores(record)

    def verdict(self, record: Record, original: str, final: str) -> dict[str, Any] | None:
        """The pairwise result of (original, final) for ``record``, if that exact pair was judged."""
        judged = self.compared.get(record["id"])
        if judged is None or judged.get("pair") != {"a": original, "b": final}:
            return None
        return judged.get("pairwise")


def outcome_of(record: Record) -> PairOutcome:
    result, pair = record["pairwise"], record["pair"]
    return PairOutcome(result["winner"], bool(result["consistent"]), len(pair["a"]), len(pair["b"]))


def summarise_pairs(records: list[Record], *, seed: int = 0) -> PairwiseStats:
    return pairwise_stats((outcome_of(r) for r in records if "pairwise" in r), seed=seed)


def summarise_grades(records: list[Record]) -> GradeStats:
    return grade_stats((valid_scores(r), final_index(r)) for r in records)


def read_summary(root: str | Path) -> dict[str, Any] | None:
    """``judge.json`` of a run or judge run, or None when there is none (or it cannot be read)."""
    path = Path(root) / SUMMARY_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == SUMMARY_FORMAT else None
