"""Held-out questions of ``condor iterate``: chosen once, never trained on, answered by every model judged.

The held-out set comes from the first iteration's data: its records are split by leaf of the knowledge
tree (:func:`condor.export.selection.split_by_leaf`), and the questions of the test leaves are kept in
``heldout.jsonl``. Every later iteration drops rows of those leaves (and any row asking one of those very
questions) from its training data, so no model is ever evaluated on a tag it was trained on.

A model's answers to the held-out questions are a small run directory of their own, made with
:func:`condor.api.arun_pipeline` from two steps: the questions (a source step) and the pipeline's own
answer stage. They are reused whenever the same model is judged again, at no cost.
Leaves out: held-out sets from outside the run (a benchmark file): ``condor judge --a --b`` does that.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from condor.config import RunConfig
from condor.export.selection import leaf_key, split_by_leaf
from condor.judge.sources import question_key
from condor.run.steps import ModelStep, SourceStep
from condor.run.store import atomic_write_lines, dumps
from condor.stages.answers import AnswerStage
from condor.stages.base import Record

HELDOUT_FILE = "heldout.jsonl"
KEPT = ("id", "question", "language", "tag_path", "domain", "task", "difficulty")


def choose_heldout(records: list[Record], share: float, limit: int, seed: int) -> tuple[list[Record], list[str]]:
    """The held-out questions (at most ``limit``) and their leaves, from a run's final records."""
    usable = [r for r in records if isinstance(r.get("question"), str) and r["question"].strip()]
    if len({leaf_key(r) for r in usable}) < 2:
        return [], []
    split = split_by_leaf(usable, share, seed)
    questions = [{k: r[k] for k in KEPT if k in r} for r in split.test][:limit]
    return questions, sorted(split.test_leaves)


def write_heldout(root: Path, questions: list[Record]) -> Path:
    path = root / HELDOUT_FILE
    atomic_write_lines(path, (dumps(q) for q in questions))
    return path


def read_heldout(root: Path) -> list[Record]:
    path = root / HELDOUT_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _row_leaf(row: dict[str, Any]) -> str | None:
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    path, language = meta.get("tag_path"), meta.get("language")
    if isinstance(path, list) and path:
        return leaf_key({"tag_path": path, "language": language})
    return None


def _row_question(row: dict[str, Any]) -> str | None:
    for turns in (row.get("messages"), row.get("prompt")):
        if isinstance(turns, list):
            users = [t.get("content") for t in turns if isinstance(t, dict) and t.get("role") == "user"]
            if users and isinstance(users[-1], str):
                return users[-1]
    return None


def without_heldout(rows: Iterable[dict[str, Any]], leaves: set[str], questions: set[str]) -> tuple[list[dict], int]:
    """Training rows (exported SFT or DPO rows) minus those of held-out leaves or questions; and how many left."""
    kept, dropped = [], 0
    for row in rows:
        question = _row_question(row)
        if _row_leaf(row) in leaves or (question is not None and question_key(question) in questions):
            dropped += 1
        else:
            kept.append(row)
    return kept, dropped


def answer_steps(questions: list[Record], config: RunConfig) -> list[Any]:
    """Two steps: the held-out questions, then the pipeline's answer stage with the answerer's sampling."""
    fingerprint = hashlib.sha256("\n".join(dumps(q) for q in questions).encode("utf-8")).hexdigest()

    def produce():
        for question in questions:
            yield {"input_id": question["id"], "records": [dict(question)], "rejections": []}

    llm = config.backend_for("answerer")
    stage = AnswerStage(max_tokens=llm.max_tokens, temperature=llm.temperature)
    return [SourceStep("heldout", produce=produce, fingerprint=fingerprint), ModelStep("answer", stage=stage)]


async def answer_heldout(questions: list[Record], config: RunConfig, out: Path, *, quiet: bool) -> Path:
    """The run directory ``out`` with a model's answers to ``questions`` (resumed, or left as it is when done)."""
    from condor.api import arun_pipeline

    await arun_pipeline(config, out, mode="void", steps=answer_steps(questions, config), quiet=quiet)
    return out
