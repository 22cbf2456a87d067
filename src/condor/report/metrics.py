"""Numbers about a run's dataset: composition, balance, leaf coverage, rejections, tokens, lengths, gains.

Everything is computed from what :class:`~condor.run.records.RunReader` gives (final records,
rejections, manifest) and, for refinement gains, the judge's grades (:class:`condor.judge.results.JudgeIndex`).
The dataset card and the HTML report both show these numbers, so they are defined once, here.

Leaf coverage is the share of the tree's leaves that have at least one kept row, per language's tree;
the tree is loaded again from the run's configuration (a shipped name or a file). When it cannot be
(the file moved, a run over an imported dataset), coverage is given against the sampled leaves only,
with a note. Balance is Pielou's evenness of the counts: 1 when every value is equally frequent, near 0
when one value dominates. Leaves out: anything that needs a model (diversity is :mod:`.diversity`).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Sequence

from condor.judge.results import JudgeIndex, final_index
from condor.judge.sources import final_answer
from condor.stages.base import Record

FIELDS = ("domain", "task", "difficulty", "language")
DIFFICULTY_ORDER = {"easy": 0, "medium": 1, "hard": 2}
UNKNOWN = "(none)"


def value_of(record: Record, field: str) -> str:
    value = record.get(field)
    return str(value) if value not in (None, "") else UNKNOWN


def counts(records: Iterable[Record], field: str) -> dict[str, int]:
    """``{value: rows}``, most frequent first (ties by value)."""
    counter = Counter(value_of(r, field) for r in records)
    if field == "difficulty":
        return dict(sorted(counter.items(), key=lambda kv: (DIFFICULTY_ORDER.get(kv[0], 9), kv[0])))
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def evenness(values: Sequence[int]) -> float | None:
    """Pielou's evenness of a distribution of counts; None with fewer than two values."""
    total = sum(values)
    if len(values) < 2 or total == 0:
        return None
    entropy = -sum((v / total) * math.log(v / total) for v in values if v)
    return entropy / math.log(len(values))


def composition(records: Sequence[Record]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in FIELDS:
        by_value = counts(records, field)
        balance = evenness(list(by_value.values()))
        out[field] = {"counts": by_value, "balance": round(balance, 4) if balance is not None else None}
    return out


def task_by_difficulty(records: Sequence[Record]) -> dict[str, Any]:
    tasks = list(counts(records, "task"))
    difficulties = list(counts(records, "difficulty"))
    grid = Counter((value_of(r, "task"), value_of(r, "difficulty")) for r in records)
    return {"tasks": tasks, "difficulties": difficulties,
            "counts": [[grid[(t, d)] for d in difficulties] for t in tasks]}


def _leaf(record: Record) -> tuple[str, tuple[str, ...]] | None:
    path = record.get("tag_path")
    if not isinstance(path, list) or not path:
        return None
    return value_of(record, "language"), tuple(str(p) for p in path)


def tree_leaves(manifest: dict[str, Any]) -> tuple[dict[str, set[tuple[str, ...]]] | None, str | None]:
    """``{language: leaves}`` of the trees the run sampled from, or (None, why not)."""
    pipeline = (manifest.get("config") or {}).get("pipeline")
    if not isinstance(pipeline, dict):
        return None, "the run's configuration names no tree"
    try:
        from condor.config import PipelineConfig
        from condor.run.plan import trees_for

        trees = trees_for(PipelineConfig.model_validate(pipeline))
    except Exception as exc:  # a moved tree file must not stop a card or a report
        return None, f"the tree could not be loaded again ({str(exc)[:200]})"
    out = {}
    for language, tree in trees.items():
        leaves = tree.leaves()
        own = {p for p in leaves if tree.language_of(p) == language}
        out[language] = own or set(leaves)
    return out, None


def leaf_coverage(records: Sequence[Record], manifest: dict[str, Any], planned: Iterable[Record] = ()) -> dict[str, Any]:
    """Leaves with a kept row, against the tree and against the sampled plan, overall and per domain."""
    kept = {leaf for leaf in map(_leaf, records) if leaf is not None}
    sampled = {leaf for leaf in map(_leaf, planned) if leaf is not None}
    trees, note = tree_leaves(manifest)
    out: dict[str, Any] = {"kept_leaves": len(kept), "sampled_leaves": len(sampled),
                           "sampled_share": len(kept & sampled) / len(sampled) if sampled else None}
    if trees is None:
        out.update({"tree_leaves": None, "tree_share": None, "by_domain": {}, "note": note})
        return out
    universe = {(language, path) for language, paths in trees.items() for path in paths}
    covered = kept & universe
    by_domain: dict[str, dict[str, int]] = {}
    for _, path in universe:
        by_domain.setdefault(path[0], {"leaves": 0, "covered": 0})["leaves"] += 1
    for _, path in covered:
        by_domain[path[0]]["covered"] += 1
    out.update({"tree_leaves": len(universe), "tree_share": len(covered) / len(universe) if universe else None,
                "by_domain": dict(sorted(by_domain.items())), "note": None})
    return out


def trees_used(records: Iterable[Record]) -> dict[str, dict[str, Any]]:
    """``{language: {"tree", "version"}}`` as recorded on the rows (the tree a row's tag came from)."""
    out: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("tree") is not None:
            out.setdefault(value_of(record, "language"), {"tree": record.get("tree"), "version": record.get("tree_version")})
    return dict(sorted(out.items()))


def rejections_by_reason(rejections: Iterable[dict[str, Any]]) -> dict[str, int]:
    """``{"stage: reason": count}``, most frequent first."""
    counter = Counter(f"{r.get('stage')}: {r.get('reason')}" for r in rejections)
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


def tokens_per_stage(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Prompt and completion tokens and requests of every model step, in pipeline order."""
    out = []
    stages = manifest.get("stages") or {}
    for name in list(manifest.get("steps") or {}) + [n for n in stages if n not in (manifest.get("steps") or {})]:
        usage = (stages.get(name) or {}).get("usage")
        if not usage:
            continue
        out.append({"stage": name, "prompt_tokens": int(usage.get("prompt_tokens", 0)),
                    "completion_tokens": int(usage.get("completion_tokens", 0)),
                    "requests": int(usage.get("requests", 0)), "cached": int(usage.get("cached", 0)),
                    "model": (stages.get(name) or {}).get("model")})
    return out


def distribution(values: Sequence[int], bins: int = 20) -> dict[str, Any]:
    """Mean, median, 90th percentile and an equal-width histogram of ``values``."""
    if not values:
        return {"n": 0, "mean": None, "median": None, "p90": None, "edges": [], "counts": []}
    ordered = sorted(values)
    n = len(ordered)
    low, high = ordered[0], ordered[-1]
    width = max(1, math.ceil((high - low + 1) / bins))
    histogram = Counter(min(bins - 1, (v - low) // width) for v in ordered)
    return {"n": n, "mean": sum(ordered) / n, "median": ordered[n // 2], "p90": ordered[min(n - 1, int(0.9 * n))],
            "edges": [low + i * width for i in range(bins + 1)], "counts": [histogram[i] for i in range(bins)]}


def lengths(records: Sequence[Record]) -> dict[str, Any]:
    """Characters of questions and final answers, and of answers by round."""
    by_round: dict[int, list[int]] = {}
    for record in records:
        for index, version in enumerate(record.get("versions") or []):
            by_round.setdefault(index, []).append(len(version.get("answer") or ""))
    return {"question": distribution([len(r.get("question") or "") for r in records]),
            "answer": distribution([len(final_answer(r) or "") for r in records]),
            "answer_by_round": [{"round": k, "mean": sum(v) / len(v), "n": len(v)} for k, v in sorted(by_round.items())]}


def refinement_gains(records: Sequence[Record], index: JudgeIndex | None) -> dict[str, Any] | None:
    """Mean grade per answer version and original against final; None when nothing was graded."""
    from condor.judge.stats import grade_stats

    graded = []
    for record in records:
        scores = index.scores(record) if index is not None else {}
        if scores:
            graded.append((scores, final_index(record)))
    if not graded:
        return None
    return grade_stats(graded).as_dict()


def run_metrics(reader: Any, records: Sequence[Record] | None = None, index: JudgeIndex | None = None,
                rejected: Sequence[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every number above for one run (``records``, ``rejected``: its final records and rejections, if read)."""
    rows = list(records) if records is not None else reader.final_records()
    rejected = list(rejected) if rejected is not None else list(reader.rejections())
    manifest = reader.manifest
    return {
        "rows": len(rows),
        "rejected": len(rejected),
        "composition": composition(rows),
        "task_by_difficulty": task_by_difficulty(rows),
        "coverage": leaf_coverage(rows, manifest, reader.plan()),
        "trees": trees_used(rows),
        "rejections": rejections_by_reason(rejected),
        "tokens": tokens_per_stage(manifest),
        "lengths": lengths(rows),
        "gains": refinement_gains(rows, index),
    }
