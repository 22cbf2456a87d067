"""Turn finished pipeline records into training rows.

- SFT: ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}], "meta": {...}}``, the chat
  format TRL's SFTTrainer and most trainers read; ``meta`` keeps the record's whole provenance.
- Preference (DPO): TRL's conversational format ``{"prompt": [...], "chosen": [...], "rejected": [...]}``
  where *chosen* is the selected refinement and *rejected* the original answer, written only when the
  selection preferred a refinement whose text differs from the original.
Rejection rows (``{"stage", "reason", "detail", "id", "record"}``) come from the run reader,
:meth:`condor.run.records.RunReader.rejections`. Pure functions over dicts; :mod:`condor.export.dataset`
writes the files.
"""

from __future__ import annotations

from typing import Any

from condor.stages.base import Record

#: Provenance fields copied into ``meta`` when present.
META_FIELDS = (
    "id",
    "tag_path",
    "domain",
    "task",
    "difficulty",
    "language",
    "tree",
    "tree_version",
    "versions",
    "critiques",
    "scores",
    "chosen",
    "models",
    "templates",
    "usage",
    "refine_notes",
    "source",
)


def sft_row(record: Record) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": record["question"]},
            {"role": "assistant", "content": record["answer"]},
        ],
        "meta": {name: record[name] for name in META_FIELDS if name in record},
    }


def preference_row(record: Record) -> dict[str, Any] | None:
    """A DPO pair (refined over original), or None when the original was kept or is identical."""
    chosen = record.get("chosen") or {}
    versions = record.get("versions") or []
    index = chosen.get("version", 0)
    if not versions or index == 0 or index >= len(versions):
        return None
    original, better = versions[0].get("answer"), versions[index].get("answer")
    if not original or not better or original.strip() == better.strip():
        return None
    return {
        "prompt": [{"role": "user", "content": record["question"]}],
        "chosen": [{"role": "assistant", "content": better}],
        "rejected": [{"role": "assistant", "content": original}],
        "meta": {
            "id": record.get("id"),
            "chosen_version": index,
            "reason": chosen.get("reason"),
            "tag_path": record.get("tag_path"),
            "task": record.get("task"),
            "difficulty": record.get("difficulty"),
            "language": record.get("language"),
        },
    }
