"""``condor export RUN --format F -o DIR``: a run's dataset in one trainer's format, with its card.

The run is read through :class:`~condor.run.records.RunReader` (no backend, no lock: nothing in the run
is written). Records are filtered (:mod:`.selection`), optionally split by leaf into train and test,
turned into rows (:mod:`.formats`, :mod:`.judged`), and written into ``DIR``: ``train.jsonl`` /
``test.jsonl`` for the JSON layouts, ``train.parquet`` / ``test.parquet``, or a ``datasets``
DatasetDict saved to disk for ``hf``; ``README.md`` beside them is the dataset card (:mod:`.card`).
``push_to_hub`` uploads an ``hf`` export and refuses early, with what to do, when offline or logged out.

The default export of a run (``sft.jsonl``, ``preference.jsonl``, ``rejected.jsonl``) stays in
:mod:`.dataset`; this module is for everything else.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from condor.export.card import render_card
from condor.export.formats import alpaca_row, flat_features, flat_row, sft_row, sharegpt_row
from condor.export.judged import critique_rows, dpo_row
from condor.export.selection import RecordFilter, select, split_by_leaf
from condor.judge.results import JudgeIndex, final_index, read_summary
from condor.judge.sources import final_answer
from condor.run.records import RunReader
from condor.run.store import atomic_write_lines, atomic_write_text, dumps
from condor.stages.base import Record

FORMATS = ("messages", "sharegpt", "alpaca", "parquet", "hf", "dpo", "critique")
INSTALL_HINT = "install the export extra: pip install 'condor-data[export]'"


class ExportError(ValueError):
    """An export that cannot be made as asked; the message says why and what to do."""


@dataclass
class DatasetExport:
    """What an export wrote: rows per split, their files, the card, and what was left out and why."""

    format: str
    out: Path
    rows: dict[str, int]
    files: dict[str, Path]
    card: Path | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    pushed: str | None = None


def _rows(fmt: str, records: list[Record], index: JudgeIndex, score_of: Callable[[Record], float | None],
          min_margin: float | None, skipped: Counter) -> list[dict[str, Any]]:
    if fmt == "messages":
        return [sft_row(r) for r in records]
    if fmt == "sharegpt":
        return [sharegpt_row(r) for r in records]
    if fmt == "alpaca":
        return [alpaca_row(r) for r in records]
    if fmt in ("parquet", "hf"):
        return [flat_row(r, score_of(r)) for r in records]
    if fmt == "dpo":
        return [row for row in (dpo_row(r, index, min_margin, skipped) for r in records) if row is not None]
    rows = [row for r in records for row in critique_rows(r, index)]
    skipped.update(row["label"] for row in rows)
    return rows


def _arrow(rows: list[dict[str, Any]]) -> Any:
    try:
        import datasets
    except ImportError:
        raise ExportError(f"the datasets library is missing for Parquet and Hugging Face exports; {INSTALL_HINT}") from None
    # Its progress bars would interleave with the command's own one-line summary.
    datasets.disable_progress_bars()
    return datasets.Dataset.from_list(rows, features=flat_features())


def _write(fmt: str, out: Path, splits: dict[str, list[dict[str, Any]]]) -> dict[str, Path]:
    if fmt == "hf":
        from datasets import DatasetDict

        data = DatasetDict({name: _arrow(rows) for name, rows in splits.items()})
        for stale in (p for p in out.iterdir() if p.is_dir()) if out.is_dir() else ():
            if (stale / "dataset_info.json").exists():  # a split directory of an earlier export here
                shutil.rmtree(stale)
        data.save_to_disk(str(out))
        return {name: out / name for name in splits}
    files = {}
    for name, rows in splits.items():
        if fmt == "parquet":
            path = out / f"{name}.parquet"
            _arrow(rows).to_parquet(str(path))
        else:
            path = out / f"{name}.jsonl"
            atomic_write_lines(path, (dumps(row) for row in rows))
        files[name] = path
    return files


def check_hub_access() -> None:
    """Raise ExportError, saying what to do, unless the Hugging Face Hub can be reached as someone."""
    try:
        from huggingface_hub import constants, get_token
    except ImportError:
        raise ExportError(f"huggingface_hub is missing for --push-to-hub; {INSTALL_HINT}") from None
    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ExportError("cannot push to the Hugging Face Hub: offline mode is on (HF_HUB_OFFLINE=1); unset it, "
                          "or push the saved dataset later with datasets.load_from_disk(DIR).push_to_hub(REPO)")
    if not get_token():
        raise ExportError("cannot push to the Hugging Face Hub: not logged in; run `hf auth login` "
                          "(or set HF_TOKEN) and export again")


def _push(out: Path, repo: str, card: Path | None) -> None:
    check_hub_access()
    from datasets import load_from_disk
    from huggingface_hub import HfApi

    try:
        load_from_disk(str(out)).push_to_hub(repo)
        if card is not None:
            HfApi().upload_file(path_or_fileobj=str(card), path_in_repo="README.md", repo_id=repo, repo_type="dataset")
    except Exception as exc:  # network, permissions, a bad repo name: all end in one actionable line
        raise ExportError(f"pushing to the Hugging Face Hub as {repo!r} failed: {str(exc)[:300]}; the dataset is "
                          f"saved in {out}, push it later with datasets.load_from_disk") from None


def _pairing_note(fmt: str, index: JudgeIndex, min_margin: float | None) -> str | None:
    margin = f" and the final answer's grade beats the original's by at least {min_margin}" if min_margin is not None else ""
    if fmt == "dpo" and index.has_pairwise:
        return ("Pairs: chosen is the final answer and rejected the original, made only where the final answer beat the "
                "original under the judge in both orders (a disagreement between the orders is a tie and makes no pair)"
                f"{margin}.")
    if fmt == "dpo":
        return ("Pairs: no pairwise judge results were found, so pairs fall back to the refined answer over the original "
                f"wherever a refinement was selected{margin}; run `condor judge --in RUN` for pairs checked in both orders.")
    if fmt == "critique":
        return ("Labels: a critique is `helpful` when the refinement it led to won under the judge (pairwise for the "
                "original-against-final pair, else grades before and after), `not_helpful` when it did not, "
                "`unjudged` without judge results.")
    return None


def export_dataset(
    run: str | Path,
    format: str,
    out: str | Path | None = None,
    *,
    rule: RecordFilter | None = None,
    min_margin: float | None = None,
    test_size: float | None = None,
    seed: int = 0,
    card: bool = True,
    push_to_hub: str | None = None,
    command: str | None = None,
) -> DatasetExport:
    """Export a finished run in ``format`` (one of :data:`FORMATS`) into the directory ``out``."""
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; formats: {', '.join(FORMATS)}")
    if test_size is not None and not 0 < test_size < 1:
        raise ExportError(f"--test-size {test_size} must be a share between 0 and 1, such as 0.1")
    if push_to_hub and format != "hf":
        raise ExportError("--push-to-hub uploads a Hugging Face dataset; use it with --format hf")
    if push_to_hub:
        check_hub_access()  # before any work: a long export that then cannot be pushed helps nobody
    reader = RunReader(run)
    root = Path(run)
    target = Path(out) if out is not None else root / "exports" / format
    if target.exists() and not target.is_dir():
        raise ExportError(f"{target} is a file; --output names a directory (the data and its README.md go in it)")
    rule = rule or RecordFilter()
    records = [r if isinstance(r.get("answer"), str) else {**r, "answer": final_answer(r)} for r in reader.final_records()]
    index = JudgeIndex(reader)
    if (rule.min_score is not None or min_margin is not None) and not any(index.scores(r) for r in records):
        raise ExportError(f"--min-score and --min-margin need judge grades, and {root} has none; run "
                          f"`condor judge --in {root}` first")

    def score_of(record: Record) -> float | None:
        return index.scores(record).get(final_index(record))

    kept, dropped = select(records, rule, score_of)
    notes: list[str] = []
    split_note = None
    if test_size:
        split = split_by_leaf(kept, test_size, seed)
        groups = {"train": split.train, "test": split.test}
        split_note = (f"Split by leaf of the knowledge tree, no leaf in both: {len(split.test_leaves)} leaves "
                      f"({len(split.test)} records) in test, seed {seed}.")
    else:
        groups = {"train": kept}
    skipped: Counter = Counter()
    rows = {name: _rows(format, group, index, score_of, min_margin, skipped) for name, group in groups.items()}
    if format == "critique":
        labels, skipped = skipped, Counter()
        if labels:
            notes.append("Labels: " + ", ".join(f"{v} {k}" for k, v in sorted(labels.items())) + ".")
        else:
            notes.append("no critique records: the run has no refinement rounds")
    target.mkdir(parents=True, exist_ok=True)
    files = _write(format, target, rows)
    result = DatasetExport(format, target, {k: len(v) for k, v in rows.items()}, files, dropped=dict(dropped),
                           skipped=dict(skipped), notes=notes)
    pairing = _pairing_note(format, index, min_margin)
    if format == "dpo" and not index.has_pairwise:
        result.notes.append("no pairwise judge results: DPO pairs are refined over original, not judged in both orders")
    if card:
        description = {"format": format, "rows": result.rows,
                       "files": {k: p.name for k, p in files.items()},
                       "data_files": {} if format == "hf" else {k: p.name for k, p in files.items()},
                       "filters": rule.describe(), "dropped": result.dropped, "split": split_note,
                       "pairing": pairing, "skipped": result.skipped, "notes": notes}
        from condor.report.metrics import run_metrics

        text = render_card(name=f"Condor {format} dataset: {root.resolve().name}", run=str(root), manifest=reader.manifest,
                           metrics=run_metrics(reader, kept, index), export=description, judge=read_summary(root),
                           command=command)
        result.card = target / "README.md"
        atomic_write_text(result.card, text)
    if push_to_hub:
        _push(target, push_to_hub, result.card)
        result.pushed = push_to_hub
    return result
