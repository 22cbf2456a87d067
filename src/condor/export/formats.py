"""Turn finished pipeline records into training rows.

- SFT: ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}], "meta": {...}}``, the chat
  format TRL's SFTTrainer and most trainers read; ``meta`` keeps the record's whole provenance.
- Preference (DPO): TRL's conversational format ``{"prompt": [...], "chosen": [...], "rejected": [...]}``
  where *chosen* is the selected refinement and *rejected* the original answer, written only when the
  selection preferred a refinement whose text differs from the original.
- ShareGPT (``conversations``), Alpaca (``instruction``/``input``/``output``), and the flat row of
  Parquet and ``datasets`` files (``messages``, typed metadata columns, provenance as JSON text).
Rows that depend on the judge (position-consistent DPO pairs, critique records) are in
:mod:`condor.export.judged`. Rejection rows (``{"stage", "reason", "detail", "id", "record"}``) come
from the run reader, :meth:`condor.run.records.RunReader.rejections`. Pure functions over dicts;
:mod:`condor.export.dataset` and :mod:`condor.export.build` write the files.
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
    "relevance",
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


# -- other trainers' layouts ------------------------------------------------------------------------
#: The provenance fields kept as columns of their own in Parquet and Hugging Face datasets.
FLAT_FIELDS = ("id", "domain", "task", "difficulty", "language")


def sharegpt_row(record: Record) -> dict[str, Any]:
    """ShareGPT layout (``conversations`` of ``from``/``value``), as axolotl and LLaMA-Factory read it."""
    return {
        "id": record.get("id"),
        "conversations": [{"from": "human", "value": record["question"]}, {"from": "gpt", "value": record["answer"]}],
        "meta": {name: record[name] for name in META_FIELDS if name in record and name != "id"},
    }


def alpaca_row(record: Record) -> dict[str, Any]:
    """Alpaca layout: the question is the instruction, there is no separate input."""
    return {"id": record.get("id"), "instruction": record["question"], "input": "", "output": record["answer"],
            **{name: record.get(name) for name in FLAT_FIELDS if name != "id"}}


def flat_row(record: Record, score: float | None) -> dict[str, Any]:
    """The SFT row for Parquet and ``datasets``: chat ``messages``, a few typed columns, provenance as JSON.

    Columnar files need one type per column across every row, which free-form provenance (notes on some
    rows, scores on others) does not have; it is kept whole, as JSON text, in ``meta``.
    """
    import json

    row = sft_row(record)
    out: dict[str, Any] = {name: record.get(name) for name in FLAT_FIELDS}
    out["messages"] = row["messages"]
    out["tag_path"] = [str(p) for p in record.get("tag_path") or []]
    out["score"] = float(score) if score is not None else None
    out["chosen_version"] = (record.get("chosen") or {}).get("version")
    out["meta"] = json.dumps(row["meta"], ensure_ascii=False, sort_keys=True)
    return out


def flat_features() -> Any:
    """The ``datasets`` schema of :func:`flat_row` (imports ``datasets``)."""
    from datasets import Features, List, Value

    message = {"role": Value("string"), "content": Value("string")}
    return Features({
        **{name: Value("string") for name in FLAT_FIELDS},
        "messages": List(message),
        "tag_path": List(Value("string")),
        "score": Value("float64"),
        "chosen_version": Value("int64"),
        "meta": Value("string"),
    })
