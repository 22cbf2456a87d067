"""Rows that rest on the judge: position-consistent DPO pairs and labelled critique records.

DPO (TRL's conversational preference format). When the run has pairwise results (``condor judge --in
RUN``), a pair is made only where the final answer beat the original in *both* orders; a split verdict
is a tie and makes no pair, and so does a record whose exact (original, final) texts were not judged.
With ``min_margin``, the final answer's grade must also exceed the original's by at least that much.
The verdicts, grades and margin go in the row's ``meta``. Without pairwise results the pair falls back
to "refined over original" wherever a refinement was selected (the pipeline's own rule), and every row
says so (``meta.pairing``), as does the dataset card.

Critique records (question, answer, critique, refined answer), one per refinement round, for training
critic models: labelled ``helpful`` when the refinement it led to won under the judge, ``not_helpful``
when it did not, ``unjudged`` without a verdict. Round 1 of a one-round refinement is labelled from the
pairwise verdict when there is one; other rounds from the grades of the answer before and after.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from condor.export.formats import preference_row
from condor.judge.results import JudgeIndex, final_index
from condor.judge.sources import final_answer
from condor.stages.base import Record

PROVENANCE = ("tag_path", "domain", "task", "difficulty", "language")


def _margin(scores: dict[int, float], final: int) -> float | None:
    if 0 in scores and final in scores:
        return scores[final] - scores[0]
    return None


def dpo_row(record: Record, index: JudgeIndex, min_margin: float | None, skipped: Counter) -> dict[str, Any] | None:
    """The preference pair of ``record``, or None (and the reason counted in ``skipped``)."""
    versions = record.get("versions") or []
    original = versions[0].get("answer") if versions else None
    final = final_answer(record)
    final_version = final_index(record)
    if not original or not final or original.strip() == final.strip() or final_version == 0:
        skipped["no_refinement"] += 1
        return None
    scores = index.scores(record)
    margin = _margin(scores, final_version)
    if min_margin is not None and (margin is None or margin < min_margin):
        skipped["no_scores" if margin is None else "below_min_margin"] += 1
        return None
    meta: dict[str, Any] = {"id": record.get("id"), "chosen_version": final_version,
                            **{name: record.get(name) for name in PROVENANCE},
                            "scores": {"original": scores.get(0), "chosen": scores.get(final_version)},
                            "margin": margin}
    if index.has_pairwise:
        verdict = index.verdict(record, original, final)
        if verdict is None:
            skipped["not_judged"] += 1
            return None
        if verdict["winner"] != "b":
            skipped["tie" if verdict["winner"] == "tie" else "original_won"] += 1
            return None
        meta.update({"pairing": "judge_both_orders", "verdicts": verdict["verdicts"]})
    else:
        fallback = preference_row(record)
        if fallback is None:
            skipped["no_refinement"] += 1
            return None
        meta.update({"pairing": "refined_over_original", "reason": (record.get("chosen") or {}).get("reason")})
    return {
        "prompt": [{"role": "user", "content": record["question"]}],
        "chosen": [{"role": "assistant", "content": final}],
        "rejected": [{"role": "assistant", "content": original}],
        "meta": meta,
    }


def critique_text(critique: dict[str, Any]) -> str:
    parts = [("Strengths", critique.get("strengths")), ("Weaknesses", critique.get("weaknesses")),
             ("Suggestions", critique.get("suggestions"))]
    return "\n\n".join(f"{label}: {text}" for label, text in parts if text)


def _label(record: Record, index: JudgeIndex, before: int, after: int) -> tuple[bool | None, str | None, dict]:
    # The same keys on every row, so that typed readers (Arrow, datasets) see one schema.
    scores = index.scores(record)
    evidence = {"winner": None, "consistent": None, "before": scores.get(before), "after": scores.get(after)}
    versions = record.get("versions") or []
    if before == 0 and after == final_index(record) and index.has_pairwise:
        verdict = index.verdict(record, versions[0].get("answer") or "", final_answer(record) or "")
        if verdict is not None:
            evidence.update(winner=verdict["winner"], consistent=verdict["consistent"])
            return verdict["winner"] == "b", "pairwise", evidence
    if before in scores and after in scores:
        return scores[after] > scores[before], "grades", evidence
    return None, None, evidence


def critique_rows(record: Record, index: JudgeIndex) -> list[dict[str, Any]]:
    """One row per critique whose refinement exists, labelled by whether the refinement won."""
    versions = record.get("versions") or []
    rounds = {v.get("round"): i for i, v in enumerate(versions)}
    rows = []
    for critique in record.get("critiques") or []:
        round_ = critique.get("round")
        after = rounds.get(round_)
        if not isinstance(round_, int) or after is None or after == 0:
            continue  # the refinement of this round failed: the critique led to nothing to judge
        before = after - 1
        won, source, evidence = _label(record, index, before, after)
        rows.append({
            "id": f"{record.get('id')}/round-{round_}",
            "question": record["question"],
            "answer": versions[before].get("answer"),
            "critique": critique_text(critique),
            "strengths": critique.get("strengths"),
            "weaknesses": critique.get("weaknesses"),
            "suggestions": critique.get("suggestions"),
            "refined_answer": versions[after].get("answer"),
            "round": round_,
            "won": won,
            "label": "unjudged" if won is None else "helpful" if won else "not_helpful",
            "label_source": source,
            "evidence": evidence,
            "meta": {"record_id": record.get("id"), **{name: record.get(name) for name in PROVENANCE}},
        })
    return rows
