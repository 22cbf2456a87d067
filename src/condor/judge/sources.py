"""What the judge compares: answers from run directories or files, paired on their shared questions.

A side of a comparison is written ``PATH`` or ``PATH@WHICH``:

- ``PATH`` a run directory (its final records, read through :class:`~condor.run.records.RunReader`) or a
  JSONL file of chat ``messages`` or ``question``/``answer`` rows (read like ``condor refine --input``);
- ``WHICH`` picks the answer of a run's records: ``final`` (default, the selected answer), ``original``
  (version 0, Condor Void's answer: D_V against D_R), or a round number ``K`` (the answer after K
  refinement rounds, or the latest before it when round K failed for that record).

Questions are matched on their text, compared after folding case and runs of white space, since two
runs of one plan, or a dataset refined twice, share questions but not necessarily ids. Within a run,
:class:`OriginalVsFinal` pairs each record's original answer with its final one instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from condor.filters.base import Gate
from condor.stages.base import Record, Rejection

#: Record fields copied from side ``a`` into each comparison record, to break results down later.
CARRIED = ("tag_path", "domain", "task", "difficulty", "language")


class JudgeInputError(ValueError):
    """A side of a comparison cannot be read; the message names it and says what is expected."""


def question_key(question: str) -> str:
    return " ".join(question.split()).casefold()


def pair_id(question: str) -> str:
    return "pair/" + hashlib.sha1(question_key(question).encode("utf-8")).hexdigest()[:16]


def final_answer(record: Record) -> str | None:
    """The answer a record went out with: the selected one, else its latest version."""
    if isinstance(record.get("answer"), str):
        return record["answer"]
    versions = record.get("versions") or []
    return versions[-1].get("answer") if versions else None


def answer_at(record: Record, which: str) -> str | None:
    versions = record.get("versions") or []
    if which == "final":
        return final_answer(record)
    if which == "original":
        return versions[0].get("answer") if versions else None
    wanted = int(which)
    # A round that failed for this record left no version of its own: its answer is the one before.
    usable = [v for v in versions if isinstance(v.get("round"), int) and v["round"] <= wanted]
    return usable[-1].get("answer") if usable else None


@dataclass
class Side:
    """One side: its label (as given), answers by question key, and what could not be used."""

    label: str
    rows: dict[str, Record] = field(default_factory=dict)
    unusable: int = 0
    duplicates: int = 0


def parse_spec(spec: str) -> tuple[Path, str]:
    """``PATH[@final|original|K]``; a path that itself contains ``@`` still works when it exists."""
    path, at, which = spec.rpartition("@")
    if at and path and (which in ("final", "original") or which.isdigit()) and not Path(spec).exists():
        return Path(path), which
    return Path(spec), "final"


def _source_records(path: Path) -> Iterator[Record | None]:
    """The records of a run or file; None for each line of a file that is not a usable row."""
    if path.is_dir():
        from condor.run.records import RunReader

        yield from RunReader(path).final_records()
        return
    if not path.is_file():
        raise JudgeInputError(f"{path}: no such run directory or file; give a run directory or a JSONL dataset")
    from condor.run.importer import import_units

    for _, records, rejections in import_units(path):
        yield from records
        for _ in rejections:
            yield None


def load_side(spec: str) -> Side:
    path, which = parse_spec(spec)
    if which != "final" and not path.is_dir():
        raise JudgeInputError(f"{spec}: '@{which}' picks an answer version of a run directory; {path} is not one")
    side = Side(spec)
    for record in _source_records(path):
        if record is None:
            side.unusable += 1
            continue
        question, answer = record.get("question"), answer_at(record, which)
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, str) or not answer.strip():
            side.unusable += 1
            continue
        key = question_key(question)
        if key in side.rows:
            side.duplicates += 1
            continue
        side.rows[key] = {**{k: record[k] for k in CARRIED if k in record}, "id": record.get("id"),
                          "question": question, "answer": answer}
    return side


@dataclass
class Comparison:
    """The pairs of two sides on their shared questions, and what did not match."""

    a: Side
    b: Side
    records: list[Record]

    @property
    def only_a(self) -> int:
        return len(self.a.rows) - len(self.records)

    @property
    def only_b(self) -> int:
        return len(self.b.rows) - len(self.records)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for record in self.records:
            digest.update(json.dumps(record, sort_keys=True, ensure_ascii=True).encode("ascii"))
        return digest.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {"a": self.a.label, "b": self.b.label, "shared": len(self.records), "only_a": self.only_a,
                "only_b": self.only_b, "unusable": {"a": self.a.unusable, "b": self.b.unusable},
                "duplicates": {"a": self.a.duplicates, "b": self.b.duplicates}}


def compare_sides(spec_a: str, spec_b: str) -> Comparison:
    """Comparison records (``pair = {"a", "b"}``) for the questions both sides answered."""
    a, b = load_side(spec_a), load_side(spec_b)
    records = []
    for key, row_a in a.rows.items():
        row_b = b.rows.get(key)
        if row_b is None:
            continue
        record = {k: row_a[k] for k in CARRIED if k in row_a}
        record.update({"id": pair_id(row_a["question"]), "question": row_a["question"],
                       "pair": {"a": row_a["answer"], "b": row_b["answer"]},
                       "sources": {"a": row_a.get("id"), "b": row_b.get("id")}})
        record.setdefault("language", "en")
        records.append(record)
    if not records:
        raise JudgeInputError(
            f"{spec_a} and {spec_b} share no question ({len(a.rows)} and {len(b.rows)} usable rows); "
            "compare datasets made from the same questions (one plan, or one --input file refined twice)"
        )
    records.sort(key=lambda r: r["id"])
    return Comparison(a, b, records)


class OriginalVsFinal(Gate):
    """Within a run: pairs a record's original answer (``a``) with its final one (``b``).

    A record whose final answer is its original, or the same text, has nothing to compare and is left
    out with the reason ``no_refinement``.
    """

    name = "original_vs_final"
    ordered = False
    chunked = False
    threaded = False

    def check(self, record: Record) -> Record | Rejection:
        original, final = answer_at(record, "original"), final_answer(record)
        if not original or not final:
            return Rejection(self.name, "no_answer", "the record has no answer to compare", record)
        if original.strip() == final.strip():
            return Rejection(self.name, "no_refinement", "the final answer is the original one", record)
        chosen = (record.get("chosen") or {}).get("version", len(record.get("versions") or []) - 1)
        return {**record, "pair": {"a": original, "b": final}, "pair_versions": {"a": 0, "b": chosen}}
