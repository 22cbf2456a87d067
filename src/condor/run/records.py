"""Reading a run directory, with no backend and no settings: anyone's entry point to a run's data.

The manifest records the step graph of the run (each step's kind, what it reads, what it carries), so
this module follows it without the code that built it: export, the report, the judge and training all
read through :class:`RunReader`.

What a step's records are depends on what its inputs are *now*: when an upstream step was redone (other
filter settings, a retried failure), units of inputs that changed or left are not part of the run any
more. A model step's view therefore keeps only the units whose recorded input hash matches its current
inputs; a model-free step is rewritten whole, so all its units are current.

Records that a carrying step (critique, refinement, judge) could not process go on with a note in
``refine_notes``; rejections of every other step on the way to the final step are where records left
the pipeline, and :meth:`RunReader.rejections` lists them with failures alongside.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from condor.run.sorting import sorted_records
from condor.run.steps import PLAN
from condor.run.directory import parse_manifest
from condor.run.store import RunStoreError, StageStore, record_hash
from condor.stages.base import Record

PLAN_FILE = "plan.jsonl"
#: Longest failure or rejection detail copied into a carried record's note.
NOTE_CHARS = 300


def read_manifest(root: Path) -> dict[str, Any]:
    """The manifest of the run at ``root``, checked for its format line; never creates anything."""
    path = root / "manifest.json"
    if not path.is_file():
        raise RunStoreError(f"{root} is not a Condor run directory (no manifest.json)")
    data = parse_manifest(path)
    data.setdefault("steps", {})
    return data


def noted(record: Record, stage: str, reason: str, detail: str, round_: int | None) -> Record:
    """``record`` with a note that ``stage`` could not process it (it goes on unchanged otherwise)."""
    notes = list(record.get("refine_notes", []))
    notes.append({"round": round_, "stage": stage, "reason": reason, "detail": detail[:NOTE_CHARS]})
    return {**record, "refine_notes": notes}


def carried_records(unit: dict[str, Any], stage: str, round_: int | None) -> Iterator[Record]:
    """The inputs of one unit that a carrying step hands on unprocessed, each noted with why."""
    for rejection in unit.get("rejections", ()):
        yield noted(rejection["record"], stage, rejection.get("reason", ""), rejection.get("detail", ""), round_)
    if unit.get("error") and unit.get("input"):
        yield noted(unit["input"], stage, "backend_error", unit.get("error", ""), round_)


class RunReader:
    """Read-only access to a run directory: manifest, each step's records, final records, rejections."""

    def __init__(self, root: str | Path, manifest: dict[str, Any] | None = None) -> None:
        self.root = Path(root)
        self.manifest = manifest if manifest is not None else read_manifest(self.root)
        self._current: dict[str, dict[str, str] | None] = {}

    # -- the graph -----------------------------------------------------------------------------------
    @property
    def steps(self) -> dict[str, dict[str, Any]]:
        """``{name: {"kind", "reads", "carry_from", "carries", ...}}`` in pipeline order."""
        return self.manifest.get("steps", {})

    @property
    def final_step(self) -> str | None:
        return (self.manifest.get("final") or {}).get("step")

    def spec(self, name: str) -> dict[str, Any]:
        try:
            return self.steps[name]
        except KeyError:
            raise RunStoreError(f"{self.root}: the run has no step {name!r}; steps: {', '.join(self.steps)}") from None

    def store(self, name: str) -> StageStore:
        return StageStore(self.root / "stages" / name, name)

    def is_complete(self, name: str) -> bool:
        return name == PLAN and (self.root / PLAN_FILE).exists() or self.store(name).is_complete()

    def ancestors(self, name: str) -> list[str]:
        """Every step that ``name`` depends on, and itself, in pipeline order."""
        wanted: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in wanted or current == PLAN or current not in self.steps:
                continue
            wanted.add(current)
            spec = self.steps[current]
            todo.extend([spec["reads"]] if spec.get("reads") else [])
            todo.extend(spec.get("carry_from", ()))
        return [step for step in self.steps if step in wanted]

    # -- records -------------------------------------------------------------------------------------
    def plan(self) -> Iterator[Record]:
        path = self.root / PLAN_FILE
        if not path.exists():
            return
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    raise RunStoreError(f"{path}:{number}: unreadable work item; the file was edited or corrupted") from None

    def inputs(self, name: str) -> Iterator[Record]:
        """What step ``name`` reads now: the records of ``reads`` plus what ``carry_from`` steps carried."""
        spec = self.spec(name)
        reads = spec.get("reads")
        if reads == PLAN:
            yield from self.plan()
        elif reads:
            yield from self.records(reads)
        for carrier in spec.get("carry_from", ()):
            yield from self.carried(carrier)

    def remember(self, name: str, current: dict[str, str] | None) -> None:
        """Tell the reader a step's current inputs (an executor that just ran it knows them already)."""
        self._current[name] = current

    def current(self, name: str) -> dict[str, str] | None:
        """``{input_id: hash}`` of a model step's current inputs; None for steps rewritten whole and for
        steps whose executor left one unit per current input (a plain store: nothing to filter out)."""
        if name not in self._current:
            if self.spec(name)["kind"] == "model" and not self.store(name).is_plain():
                self._current[name] = {r["id"]: record_hash(r) for r in self.inputs(name)}
            else:
                self._current[name] = None
        return self._current[name]

    def records(self, name: str) -> Iterator[Record]:
        """The output records of step ``name`` (current ones only)."""
        if name == PLAN:
            yield from self.plan()
            return
        yield from self.store(name).iter_records(self.current(name))

    def step_rejections(self, name: str) -> Iterator[dict[str, Any]]:
        yield from self.store(name).iter_rejections(self.current(name))

    def step_failures(self, name: str) -> Iterator[dict[str, Any]]:
        yield from self.store(name).iter_failures(self.current(name))

    def carried(self, name: str) -> Iterator[Record]:
        """The inputs a carrying step could not process, each with a note saying why."""
        round_ = self.spec(name).get("round")
        for unit in self.store(name).latest_units(self.current(name)):
            yield from carried_records(unit, name, round_)

    def count(self, name: str) -> int:
        return sum(1 for _ in self.records(name))

    def final_records(self) -> list[Record]:
        """The records of the final step, in id order, as a list (see :meth:`iter_final_records`)."""
        return list(self.iter_final_records())

    def iter_final_records(self) -> Iterator[Record]:
        """The records of the final step, in id order (what ``sft.jsonl`` is made from), streamed: the
        sort spills to disk (:mod:`condor.run.sorting`), so memory does not grow with the run.

        A ``--target N`` run keeps exactly N of them, the earliest draws of its plan first; the rest are
        surplus, not part of the dataset.
        """
        final = self.final_step
        if final is None:
            raise RunStoreError(f"{self.root}: the run has not finished any pipeline yet; nothing to read")
        if not self.is_complete(final):
            raise RunStoreError(f"{self.root}: step {final!r} has not finished; rerun the command that made this run")
        limit = (self.manifest.get("final") or {}).get("limit")
        return self._final(final, limit)

    def _final(self, final: str, limit: int | None) -> Iterator[Record]:
        if limit is None:
            yield from sorted_records(self.records(final))
            return
        cutoff = None
        for count, record in enumerate(sorted_records(self.records(final), key=_by_draw), start=1):
            if count == limit:
                cutoff = _by_draw(record)
                break
        kept = self.records(final) if cutoff is None else (r for r in self.records(final) if _by_draw(r) <= cutoff)
        yield from sorted_records(kept)

    def rejections(self) -> Iterator[dict[str, Any]]:
        """Every record that left the pipeline before the final step, and every failed model call.

        Rows are ``{"stage", "reason", "detail", "id", "record"}``; records carried on by a critique or
        refinement round are not here (they are in the dataset, with notes).
        """
        final = self.final_step
        if final is None:
            return
        for name in self.ancestors(final):
            spec = self.steps[name]
            if spec.get("carries") or not self.store(name).shard_paths():
                continue
            for rejection in self.step_rejections(name):
                record = rejection.get("record") or {}
                yield {"stage": rejection.get("stage"), "reason": rejection.get("reason"),
                       "detail": rejection.get("detail", ""), "id": record.get("id"), "record": record}
            for unit in self.step_failures(name):
                yield {"stage": name, "reason": "backend_error", "detail": unit.get("error", ""),
                       "id": unit["input_id"], "record": unit.get("input") or {}}


def _by_draw(record: Record) -> tuple[int, str]:
    return record.get("draw", 0), record["id"]


def read_run(root: str | Path) -> RunReader:
    """Open the run at ``root`` for reading (no lock, no backend, nothing written)."""
    return RunReader(root)
