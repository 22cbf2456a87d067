"""Which records an export takes, and how they are split into train and test.

Filters keep a record when each given field has one of the given values (language, task, difficulty,
domain) and, with ``min_score``, when its final answer has a judge grade of at least that much (an
ungraded record is left out then: nothing shows it passes). The split is by leaf of the knowledge
tree, never by row: every record of one leaf (in one language) lands on the same side, so a model is
never tested on a tag it was trained on. Leaves are ordered by a seeded hash and taken into the test
split until it holds the requested share of rows. Records without a tag path (an imported dataset)
are each a group of their own.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from condor.stages.base import Record

FILTER_FIELDS = ("language", "task", "difficulty", "domain")


@dataclass(frozen=True)
class RecordFilter:
    """Allowed values per field (empty: any) and a minimum grade of the final answer (None: any)."""

    language: tuple[str, ...] = ()
    task: tuple[str, ...] = ()
    difficulty: tuple[str, ...] = ()
    domain: tuple[str, ...] = ()
    min_score: float | None = None

    @classmethod
    def from_text(cls, min_score: float | None = None, **values: str | Sequence[str] | None) -> "RecordFilter":
        """From comma-separated CLI values (``language="en,zh"``) or lists."""
        parsed = {}
        for name in FILTER_FIELDS:
            raw = values.get(name)
            items = raw.split(",") if isinstance(raw, str) else list(raw or [])
            parsed[name] = tuple(item.strip() for item in items if item and item.strip())
        return cls(**parsed, min_score=min_score)

    @property
    def active(self) -> bool:
        return self.min_score is not None or any(getattr(self, name) for name in FILTER_FIELDS)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: list(getattr(self, name)) for name in FILTER_FIELDS if getattr(self, name)}
        if self.min_score is not None:
            out["min_score"] = self.min_score
        return out

    def reason_against(self, record: Record, score: float | None) -> str | None:
        """Why ``record`` is left out (``"language"``, ``"min_score"``...), or None when it is kept."""
        for name in FILTER_FIELDS:
            allowed = getattr(self, name)
            if allowed and str(record.get(name)) not in allowed:
                return name
        if self.min_score is not None and (score is None or score < self.min_score):
            return "min_score" if score is not None else "no_score"
        return None


def select(records: Sequence[Record], rule: RecordFilter, score_of: Callable[[Record], float | None]) -> tuple[list[Record], Counter]:
    """The records ``rule`` keeps, and how many each filter left out."""
    kept, dropped = [], Counter()
    for record in records:
        reason = rule.reason_against(record, score_of(record)) if rule.active else None
        if reason is None:
            kept.append(record)
        else:
            dropped[reason] += 1
    return kept, dropped


def leaf_key(record: Record) -> str:
    path = record.get("tag_path")
    if isinstance(path, list) and path:
        return f"{record.get('language') or ''}:" + " > ".join(str(p) for p in path)
    return f"record:{record.get('id')}"


@dataclass
class Split:
    train: list[Record] = field(default_factory=list)
    test: list[Record] = field(default_factory=list)
    test_leaves: set[str] = field(default_factory=set)


def split_by_leaf(records: Sequence[Record], test_size: float, seed: int = 0) -> Split:
    """Train and test sets with no leaf in both; ``test_size`` is the wanted share of rows (0 < x < 1)."""
    if not 0 < test_size < 1:
        raise ValueError(f"test size {test_size} must be a share between 0 and 1 (such as 0.1)")
    groups: dict[str, list[Record]] = {}
    for record in records:
        groups.setdefault(leaf_key(record), []).append(record)
    order = sorted(groups, key=lambda key: hashlib.sha256(f"{seed}\0{key}".encode("utf-8")).hexdigest())
    target = max(1, round(test_size * len(records))) if records else 0
    split = Split()
    taken = 0
    for key in order:
        # Keep at least one leaf for training: a test split of everything is no split.
        if taken < target and len(split.test_leaves) < len(order) - 1:
            split.test_leaves.add(key)
            taken += len(groups[key])
    for record in records:
        (split.test if leaf_key(record) in split.test_leaves else split.train).append(record)
    return split
