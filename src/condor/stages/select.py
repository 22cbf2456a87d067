"""Choosing which answer version of a record becomes its final answer, and saying why.

Two modes:

``last``
    The newest version, as the paper does: refinement is trusted to improve.
``best``
    The version with the highest judge score, where the original answer (version 0) is the baseline:
    a refinement is chosen only when it scores strictly higher than the original and than every
    earlier version, so a tie keeps the earlier version and a regression is never accepted.
    Refinements without a score are never chosen, since nothing shows they are not worse. When the
    original itself has no score (the judge was not run, or could not grade it) or was cut off, there is
    no baseline: the highest-scored complete version is chosen (ties to the earlier), and only when no
    complete version has a score does ``best`` fall back to the ``last`` rule. ``chosen["fallback"]``
    is true in both cases and the reason says why.

In both modes a version cut off by the token limit (``finish_reason == "length"``) is passed over in
favour of the latest complete one, because the quality filter would reject the record for it; only
when every version was cut off is one of them chosen.

This is pure record manipulation: no model call, nothing to parse.
"""

from __future__ import annotations

from typing import Any, Literal

from condor.stages.base import Record

Mode = Literal["last", "best"]


def _label(index: int) -> str:
    return "the original (version 0)" if index == 0 else f"version {index}"


def _scores(record: Record, count: int) -> dict[int, int]:
    """Valid judge scores by version index; malformed or out-of-range entries are ignored."""
    out: dict[int, int] = {}
    for entry in record.get("scores") or []:
        if not isinstance(entry, dict):
            continue
        version, score = entry.get("version"), entry.get("score")
        if isinstance(version, bool) or isinstance(score, bool):
            continue
        if isinstance(version, int) and 0 <= version < count and isinstance(score, (int, float)) and 1 <= score <= 10:
            out.setdefault(version, score)  # the first grade of a version counts
    return out


def _last(candidates: list[int], truncated: list[int]) -> tuple[int, str]:
    chosen = candidates[-1]
    if chosen == 0 and not truncated:
        return 0, "the original is the only version"
    reason = f"{_label(chosen)} is the last version"
    later = [i for i in truncated if i > chosen]
    if later:
        cut = ", ".join(str(i) for i in later)
        reason = f"{_label(chosen)} is the last complete version; version(s) {cut} were cut off by the token limit"
    return chosen, reason


def select_version(record: Record, mode: Mode = "last") -> Record:
    """A copy of ``record`` with ``chosen`` ({version, mode, reason, score, fallback}) and ``answer`` set."""
    if mode not in ("last", "best"):
        raise ValueError(f"unknown selection mode {mode!r}; use 'last' or 'best'")
    versions = record.get("versions")
    if not isinstance(versions, list) or not versions:
        raise ValueError(f"record {record.get('id')!r} has no answer versions to choose from")
    truncated = [i for i, v in enumerate(versions) if v.get("finish_reason") == "length"]
    candidates = [i for i in range(len(versions)) if i not in truncated]
    if not candidates:  # every version was cut off: none is better than another on that count
        candidates, truncated = list(range(len(versions))), []
    scores = _scores(record, len(versions))
    fallback = False

    if mode == "last":
        chosen, reason = _last(candidates, truncated)
    elif 0 not in scores or 0 not in candidates:
        fallback = True
        why = "the original has no judge score" if 0 not in scores else "the original was cut off"
        scored = [i for i in candidates if i in scores]
        if scored:
            # Falling back to "last" here would ignore the scores we have and could pick the worst version.
            chosen = max(scored, key=lambda i: (scores[i], -i))
            reason = (
                f"{why}, so there is no baseline; {_label(chosen)} has the highest score among complete "
                f"versions ({_fmt(scores[chosen])})"
            )
        else:
            chosen, reason = _last(candidates, truncated)
            reason = f"{why}, so there is no baseline; fell back to the last-version rule: {reason}"
    else:
        chosen, reason = _best(candidates, scores)

    chosen_entry: dict[str, Any] = {
        "version": chosen,
        "mode": mode,
        "reason": reason,
        "score": scores.get(chosen),
        "fallback": fallback,
    }
    return {**record, "chosen": chosen_entry, "answer": versions[chosen]["answer"]}


def _best(candidates: list[int], scores: dict[int, int]) -> tuple[int, str]:
    original = scores[0]
    scored = [i for i in candidates if i in scores]
    best = 0
    for index in scored:
        if scores[index] > scores[best]:  # strictly greater: ties keep the earlier version
            best = index
    if best != 0:
        return best, f"version {best} scored {_fmt(scores[best])} > original {_fmt(original)}"
    refinements = [i for i in scored if i != 0]
    unscored = [i for i in candidates if i not in scores]
    if not refinements:
        if unscored:
            return 0, f"no refinement has a judge score (version(s) {', '.join(map(str, unscored))}); kept the original"
        return 0, "the original is the only version"
    top = max(refinements, key=lambda i: (scores[i], -i))
    relation = "=" if scores[top] == original else "<"
    return 0, (
        f"no refinement scored above the original: best refinement version {top} scored "
        f"{_fmt(scores[top])} {relation} original {_fmt(original)}; kept the original"
    )


def _fmt(score: float) -> str:
    return str(int(score)) if float(score).is_integer() else f"{score:g}"
