"""Running a list of steps over a run directory: skip what is finished, run the rest, record it.

For each step in order: a step whose completion marker carries the same key as now (the same
upstream markers and the same settings: a gate's, or a model step's model and sampling settings) is
skipped without reading its inputs; otherwise a model step goes to the executor, which resumes from
the step's shards (units made under other sampling settings do not count as done) and the request
cache, and a
gate or source step is computed again whole (it is cheap and deterministic). Every step's counts,
token usage, template version and model go into the manifest, with the step graph, so that
:class:`~condor.run.records.RunReader` can read the run later without any of this code.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from condor.llm.settings import describe_change
from condor.run.executor import Executor, StageOutcome
from condor.run.records import PLAN_FILE, RunReader
from condor.run.sorting import is_sorted, sorted_records
from condor.run.steps import PLAN, GateStep, ModelStep, SourceStep, Step, resolve
from condor.run.directory import RunDirectory
from condor.run.store import StageStore
from condor.stages.base import Record

#: Longest error text kept per distinct error in the manifest.
ERROR_CHARS = 300


def step_key(run: RunDirectory, upstream: Iterable[str | None], settings: Any) -> str:
    """What a finished step's marker must match for the step to count as finished now.

    The plan counts by its content: a plan that grew (``--target``) makes the steps run again.
    """
    markers = []
    for name in upstream:
        if name == PLAN:
            markers.append(_file_digest(run.root / PLAN_FILE))
            continue
        path = run.stage(name).complete_path if name else None
        markers.append(path.read_text(encoding="utf-8") if path is not None and path.exists() else None)
    blob = json.dumps({"upstream": markers, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _file_digest(path: Path) -> str | None:
    if not path.exists():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class Tally:
    """A step's counts as the manifest records them: units, records, rejections, failures, reasons."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def add(self, unit: dict[str, Any]) -> dict[str, Any]:
        self.counts["units"] += 1
        self.counts["records"] += len(unit.get("records", ()))
        self.counts["rejections"] += len(unit.get("rejections", ()))
        self.reasons.update(r.get("reason", "unknown") for r in unit.get("rejections", ()))
        if unit.get("error"):
            self.counts["failures"] += 1
            self.reasons["backend_error"] += 1
            self.errors[str(unit["error"])[:ERROR_CHARS]] += 1
        return unit

    def summary(self) -> dict[str, Any]:
        counts = {name: self.counts[name] for name in ("units", "records", "rejections", "failures")}
        # The commonest errors, so that a summary (and a rerun's summary) can say why calls failed.
        return {**counts, "reasons": dict(self.reasons.most_common()), "errors": dict(self.errors.most_common(3))}


def step_summary(reader: RunReader, name: str) -> dict[str, Any]:
    """The counts the manifest records for step ``name`` as it now is (``condor merge`` records the same)."""
    tally = Tally()
    for unit in reader.store(name).latest_units(reader.current(name)):
        tally.add(unit)
    return tally.summary()


def describe_steps(steps: Sequence[Step]) -> dict[str, dict[str, Any]]:
    out = {}
    for step in steps:
        spec = step.describe()
        stage = getattr(step, "stage", None)
        if getattr(stage, "round", None) is not None:
            spec["round"] = stage.round  # type: ignore[union-attr]
        out[step.name] = spec
    return out


class StepRunner:
    """Runs ``steps`` into ``run`` with ``executor`` (for model steps)."""

    def __init__(self, run: RunDirectory, executor: Executor, *, retry_failed: bool = False) -> None:
        self.run = run
        self.executor = executor
        self.retry_failed = retry_failed
        self.reader = RunReader(run.root, run.manifest)
        #: Things the person running this should know (a step redone because its settings changed).
        self.notes: list[str] = []

    def key(self, step: Step) -> str:
        """What ``step``'s completion marker must say for the step to count as finished now: its
        inputs, and the settings that change its output (a model step's sampling settings included)."""
        if isinstance(step, GateStep):
            settings = step.settings
        elif isinstance(step, SourceStep):
            settings = step.fingerprint
        else:
            settings = step.settings or None
        return step_key(self.run, [step.reads, *step.carry_from], settings)

    def _finished(self, step: Step) -> bool:
        store = self.run.stage(step.name)
        if self.retry_failed or not store.is_complete():
            return False
        marker = store.completion()
        return marker is not None and marker.get("key") == self.key(step)

    async def run_steps(self, steps: Sequence[Step]) -> RunReader:
        """Skip the finished steps at the head of ``steps``; hand the rest to the executor as chains.

        Once a step must run, every step after it runs too (resuming from its units, so finished work
        costs no calls): what it reads is being redone. Source steps bring records in from outside and
        are computed whole where they stand, between chains.
        """
        steps = resolve(steps)
        graph = self.run.manifest.setdefault("steps", {})
        graph.update(describe_steps(steps))
        self.run.save_manifest()
        chain: list[Step] = []
        for step in steps:
            if isinstance(step, SourceStep):
                await self._run_chain(chain)
                chain = []
                if not self._finished(step):
                    assert step.produce is not None
                    self._rewrite(step, step.produce(), step.fingerprint)
            elif not isinstance(step, (ModelStep, GateStep)):
                raise TypeError(f"step {step.name!r} is a {type(step).__name__}, not a model, gate or source step")
            elif chain or not self._finished(step):
                chain.append(step)
        await self._run_chain(chain)
        return self.reader

    async def _run_chain(self, steps: list[Step]) -> None:
        if not steps:
            return
        for step in steps:
            if isinstance(step, ModelStep):
                # The settings that will have made this step's data; units made under others are redone.
                entry = self.run.manifest["stages"].setdefault(step.name, {})
                before = entry.get("settings")
                if step.settings and before and before != step.settings:
                    self.notes.append(f"{step.name}: {describe_change(before, step.settings)} since its data was made; redone")
                entry["settings"] = step.settings
            self.run.stage(step.name).clear_complete()
        self.run.save_manifest()
        await self.executor.run_chain(StepChain(self, steps))

    def _rewrite(self, step: Step, units: Iterable[dict[str, Any]], settings: Any) -> None:
        store = self.run.stage(step.name)
        key = step_key(self.run, [step.reads, *step.carry_from], settings)
        tally = Tally()
        store.rewrite(tally.add(unit) for unit in units)
        self._record(step, key, tally.summary())

    def _record(self, step: Step, key: str, summary: dict[str, Any]) -> None:
        """Counts into the manifest, then the completion marker (a rewritten store is plain: one unit
        per input, in the main shard, which readers take line by line)."""
        entry = self.run.manifest["stages"].setdefault(step.name, {})
        self.reader.remember(step.name, None)
        entry.update(summary)
        self.run.stage(step.name).mark_complete({**entry, "key": key, "plain": True})
        self.run.save_manifest()


class StepChain:
    """Unfinished steps that an executor runs in one go, and what it needs from the run directory.

    Steps outside the chain are finished: their records are read from the run directory
    (:meth:`read`). A step of the chain is finished, in chain order, with :meth:`model_done` or
    :meth:`gate_done`; its completion key is taken then, when what it reads is final.
    """

    def __init__(self, runner: StepRunner, steps: list[Step]) -> None:
        self.runner = runner
        self.steps = steps
        self._by_name = {step.name: step for step in steps}

    def step(self, name: str) -> Step:
        return self._by_name[name]

    def store(self, step: Step) -> StageStore:
        return self.runner.run.stage(step.name)

    def inputs(self, step: Step) -> Iterator[Record]:
        """What ``step`` reads, from the run directory (the steps before it must be finished)."""
        return self.runner.reader.inputs(step.name)

    def total(self, step: Step) -> int:
        return sum(1 for _ in self.inputs(step))

    def read(self, kind: str, name: str, *, ordered: bool = False) -> Iterator[Record]:
        """Records of the finished step ``name`` (``kind`` "records"), or what it carried ("carried");
        in id order when ``ordered`` (sorted on disk when they are not already)."""
        reader = self.runner.reader
        if kind == "carried":
            return sorted_records(reader.carried(name)) if ordered else reader.carried(name)
        if not ordered:
            return reader.records(name)
        if name == PLAN and is_sorted(reader.plan()):
            return reader.plan()
        return sorted_records(reader.records(name))

    def model_done(self, step: ModelStep, outcome: StageOutcome) -> None:
        assert step.stage is not None
        runner = self.runner
        key = runner.key(step)
        entry = runner.run.manifest["stages"].setdefault(step.name, {})
        previous = entry.get("usage", {})
        if not outcome.plain:
            runner.reader.remember(step.name, dict(outcome.input_hashes))
        summary = outcome.summary if outcome.summary is not None else step_summary(runner.reader, step.name)
        # Token totals accumulate over resumed executions; counts describe the step as it now is.
        entry.update(summary)
        entry["usage"] = {k: previous.get(k, 0) + v for k, v in outcome.usage.as_dict().items()}
        entry["template_version"] = step.stage.version
        entry["model"] = runner.executor.model_of(step.stage.role)
        if outcome.models:
            entry["backend"] = outcome.models.get(step.stage.role)
        marker = {**entry, "key": key}
        if outcome.plain:
            marker["plain"] = True
            runner.reader.remember(step.name, None)
        runner.run.stage(step.name).mark_complete(marker)
        runner.run.save_manifest()

    def gate_done(self, step: GateStep, summary: dict[str, Any]) -> None:
        """A gate step whose units were written whole (its store is plain) with these counts."""
        self.runner._record(step, self.runner.key(step), summary)

    def gate_whole(self, step: GateStep) -> None:
        """Run a gate step over its inputs read from the run directory (the steps before it finished)."""
        self.runner._rewrite(step, step.units(self.inputs(step)), step.settings)
