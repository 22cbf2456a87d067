"""Writing a finished run's dataset files from its run directory, with no backend.

``sft.jsonl`` (or ``void.jsonl`` for a Condor Void run), ``preference.jsonl`` where a refinement was
selected, and ``rejected.jsonl`` with every record that left the pipeline and why. Everything is read
through :class:`~condor.run.records.RunReader`; files are written whole or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from condor.export.formats import preference_row, sft_row
from condor.run.records import RunReader
from condor.run.directory import RunDirectory
from condor.run.store import atomic_write_lines, dumps

@dataclass
class ExportSummary:
    sft: int
    preference: int
    rejected: int
    paths: dict[str, Path] = field(default_factory=dict)


def write_exports(reader: RunReader, out_dir: Path | None = None) -> ExportSummary:
    """Write the dataset files of ``reader``'s run into ``out_dir`` (default: the run directory).

    The caller holds the run directory's lock when ``out_dir`` is the run directory.
    """
    out = Path(out_dir) if out_dir is not None else reader.root
    final = reader.manifest.get("final") or {}
    refined = bool(final.get("preference"))

    def records():
        # Read (and sorted) once per file rather than held in a list: memory stays flat in the run.
        for record in reader.iter_final_records():
            # Condor Void alone: no version was selected; the answer is the latest (only) one.
            yield record if refined else {**record, "answer": record["versions"][-1]["answer"]}

    dataset = final.get("dataset") or "sft.jsonl"
    paths = {"sft": out / dataset, "rejected": out / "rejected.jsonl"}
    sft = atomic_write_lines(paths["sft"], (dumps(sft_row(r)) for r in records()))
    preference = 0
    if refined:
        paths["preference"] = out / "preference.jsonl"
        pairs = (row for row in (preference_row(r) for r in records()) if row is not None)
        preference = atomic_write_lines(paths["preference"], (dumps(p) for p in pairs))
    rejected = atomic_write_lines(paths["rejected"], (dumps(r) for r in reader.rejections()))
    return ExportSummary(sft, preference, rejected, paths)


def export_run(run: str | Path, out_dir: str | Path | None = None) -> ExportSummary:
    """``condor export RUN``: write the dataset files again from a finished run, no model needed."""
    root = Path(run)
    reader = RunReader(root)
    target = Path(out_dir) if out_dir is not None else root
    in_place = target.resolve() == root.resolve()
    directory = RunDirectory(root) if in_place else None
    lock = directory.lock().acquire() if directory is not None else None
    try:
        summary = write_exports(reader, target)
        if directory is not None:
            record_export(directory, summary)
    finally:
        if lock is not None:
            lock.release()
    return summary


def record_export(run: RunDirectory, summary: ExportSummary) -> None:
    run.manifest["export"] = {
        "sft": summary.sft, "preference": summary.preference, "rejected": summary.rejected,
        "files": {kind: path.name for kind, path in summary.paths.items()},
    }
    run.save_manifest()


__all__ = ["ExportSummary", "export_run", "record_export", "write_exports"]
