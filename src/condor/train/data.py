"""Training rows for ``condor train``: SFT conversations and DPO preference pairs, checked one by one.

Where they come from:

- a run directory (``condor run``): exported first, with :func:`condor.export.build.export_dataset`, into
  ``MODEL_DIR/data`` (``messages`` for SFT; ``dpo`` for DPO: pairs the judge preferred in both orders when
  the run was judged, else the selected refinement over the original answer), so the model directory
  keeps exactly what it was trained on;
- an export directory (``condor export --format messages|dpo``): its ``train.jsonl``;
- a JSONL file: SFT rows ``{"messages": [...]}`` (the last turn the assistant's) or ``{"question", "answer"}``;
  DPO rows in TRL's conversational format ``{"prompt": [...], "chosen": [...], "rejected": [...]}`` (plain
  strings are taken as one user or assistant turn).

SFT rows become TRL's prompt-completion form, so the loss is computed on the answer only, never on the
question. A row that cannot be used is counted by reason, never a traceback and never silently; no
usable row at all is a :class:`TrainDataError`. Leaves out: Parquet and ``datasets`` directories, and
streaming data larger than memory (a training set here is thousands of rows, not millions).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROLES = ("system", "user", "assistant")


class TrainDataError(ValueError):
    """The training data cannot be used; the message says where and what to do."""


@dataclass
class TrainingData:
    """Usable rows, where they came from, and the rows left out by reason."""

    rows: list[dict[str, Any]]
    source: str
    skipped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for row in self.rows:
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=True).encode("ascii"))
        return digest.hexdigest()[:16]


def _messages(value: Any, role: str) -> list[dict[str, str]] | str:
    """A list of chat turns (a plain string is one turn of ``role``), or why it is not one."""
    if isinstance(value, str):
        value = [{"role": role, "content": value}]
    if not isinstance(value, list) or not value:
        return "not_a_message_list"
    out = []
    for turn in value:
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            return "bad_role"
        content = turn.get("content")
        if not isinstance(content, str) or not content.strip():
            return "empty_message"
        out.append({"role": turn["role"], "content": content})
    return out


def sft_row(data: dict[str, Any]) -> dict[str, Any] | str:
    """``{"prompt": [...], "completion": [assistant turn]}``, or the reason the row is unusable."""
    if "messages" in data:
        turns = _messages(data["messages"], "user")
    elif "question" in data or "answer" in data:
        question, answer = data.get("question"), data.get("answer")
        if not isinstance(question, str) or not question.strip() or not isinstance(answer, str) or not answer.strip():
            return "empty_message"
        turns = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    else:
        return "no_messages"
    if isinstance(turns, str):
        return turns
    if turns[-1]["role"] != "assistant" or not any(t["role"] == "user" for t in turns[:-1]):
        return "no_user_then_assistant"
    return {"prompt": turns[:-1], "completion": turns[-1:]}


def dpo_row(data: dict[str, Any]) -> dict[str, Any] | str:
    """``{"prompt", "chosen", "rejected"}`` as message lists, or the reason the row is unusable."""
    if not all(key in data for key in ("prompt", "chosen", "rejected")):
        return "not_a_preference_pair"
    prompt = _messages(data["prompt"], "user")
    chosen, rejected = _messages(data["chosen"], "assistant"), _messages(data["rejected"], "assistant")
    for part in (prompt, chosen, rejected):
        if isinstance(part, str):
            return part
    assert not isinstance(prompt, str) and not isinstance(chosen, str) and not isinstance(rejected, str)
    if prompt[-1]["role"] != "user" or chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return "no_user_then_assistant"
    if chosen[-1]["content"].strip() == rejected[-1]["content"].strip():
        return "chosen_equals_rejected"
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def read_rows(path: Path, convert: Callable[[dict[str, Any]], dict[str, Any] | str]) -> TrainingData:
    """Every line of a JSONL file through ``convert``; unusable lines are counted by reason."""
    result = TrainingData([], str(path))
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise TrainDataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        try:
            for raw in handle:
                if not raw.strip():
                    continue
                try:
                    data = json.loads(raw)
                except json.JSONDecodeError:
                    result.skipped["invalid_json"] += 1
                    continue
                row = convert(data) if isinstance(data, dict) else "not_an_object"
                if isinstance(row, str):
                    result.skipped[row] += 1
                else:
                    result.rows.append(row)
        except UnicodeDecodeError:
            raise TrainDataError(f"{path}: not UTF-8 text; give a JSONL file") from None
    return result


def _from_run(run: Path, method: str, work: Path) -> tuple[Path, list[str]]:
    from condor.export.build import ExportError, export_dataset

    fmt = "messages" if method == "sft" else "dpo"
    try:
        exported = export_dataset(run, fmt, work, card=True)
    except ExportError as exc:
        raise TrainDataError(f"{run}: {exc}") from None
    return exported.files["train"], list(exported.notes)


def load_training_data(data: str | Path, method: str, work: Path) -> TrainingData:
    """The rows of ``data`` for ``method`` (sft or dpo); a run directory is exported into ``work`` first."""
    path = Path(data)
    notes: list[str] = []
    if path.is_dir():
        if (path / "manifest.json").is_file():
            path, notes = _from_run(path, method, work)
        elif (path / "train.jsonl").is_file():
            path = path / "train.jsonl"
        else:
            raise TrainDataError(f"{path}: neither a run directory (manifest.json) nor an export (train.jsonl)")
    elif not path.is_file():
        raise TrainDataError(f"{path}: no such file or directory; give a run directory, an export or a JSONL file")
    result = read_rows(path, sft_row if method == "sft" else dpo_row)
    result.notes = notes
    if not result.rows:
        why = ", ".join(f"{n} {reason}" for reason, n in result.skipped.most_common()) or "the file is empty"
        expected = "messages rows" if method == "sft" else "prompt/chosen/rejected pairs"
        raise TrainDataError(f"{path}: no usable {expected} ({why})")
    return result
