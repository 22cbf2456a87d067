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
from typing import Any, Iterable, Sequence

from condor.llm.settings import describe_change
from condor.run.executor import Executor
from condor.run.records import PLAN_FILE, RunReader
from condor.run.steps import PLAN, GateStep, ModelStep, SourceStep, Step, resolve
from condor.run.store import RunDirectory, StageStore

#: Longest error text kept per distinct error in the manifest.
ERROR_CHARS = 300


def step_key(run: RunDirectory, upstream: Iterable[str | None], settings: Any) -> str:
    """What a finished step's marker must match for the step to count as finished now.

    The plan counts by its content: a plan that grew (``--target``) makes the steps run again.
    """
    markers = []
    for name in upstream:
        if name == PLAN:
            plan = run.root / PLAN_FILE
            markers.append(hashlib.sha256(plan.read_bytes()).hexdigest() if plan.exists() else None)
            continue
        path = run.stage(name).complete_path if name else None
        markers.append(path.read_text(encoding="utf-8") if path is not None and path.exists() else None)
    blob = json.dumps({"upstream": markers, "settings": settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def step_summary(reader: RunReader, name: str) -> dict[str, Any]:
    """The counts the manifest records for step ``name`` as it now is (``condor merge`` records the same)."""
    units = records = rejections = failures = 0
    reasons: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    for unit in reader.store(name).latest_units(reader.current(name)):
        units += 1
        records += len(unit.get("records", ()))
        rejections += len(unit.get("rejections", ()))
        reasons.update(r.get("reason", "unknown") for r in unit.get("rejections", ()))
        if unit.get("error"):
            failures += 1
            reasons["backend_error"] += 1
            errors[str(unit["error"])[:ERROR_CHARS]] += 1
    # The commonest errors, so that a summary (and a rerun's summary) can say why calls failed.
    return {"units": units, "records": records, "rejections": rejections, "failures": failures,
            "reasons": dict(reasons.most_common()), "errors": dict(errors.most_common(3))}


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

    def _finished(self, store: StageStore, key: str) -> bool:
        if self.retry_failed or not store.is_complete():
            return False
        marker = store.completion()
        return marker is not None and marker.get("key") == key

    async def run_steps(self, steps: Sequence[Step]) -> RunReader:
        steps = resolve(steps)
        graph = self.run.manifest.setdefault("steps", {})
        graph.update(describe_steps(steps))
        self.run.save_manifest()
        for step in steps:
            if isinstance(step, ModelStep):
                await self._model_step(step)
            elif isinstance(step, GateStep):
                self._rewritten(step, step.units(self.reader.inputs(step.name)), step.settings)
            elif isinstance(step, SourceStep):
                assert step.produce is not None
                self._rewritten(step, step.produce(), step.fingerprint)
            else:
                raise TypeError(f"step {step.name!r} is a {type(step).__name__}, not a model, gate or source step")
        return self.reader

    async def _model_step(self, step: ModelStep) -> None:
        assert step.stage is not None
        store = self.run.stage(step.name)
        key = step_key(self.run, [step.reads, *step.carry_from], step.settings or None)
        if self._finished(store, key):
            return
        # The settings that will have made this step's data; units made under others are redone.
        entry = self.run.manifest["stages"].setdefault(step.name, {})
        before = entry.get("settings")
        if step.settings and before and before != step.settings:
            self.notes.append(f"{step.name}: {describe_change(before, step.settings)} since its data was made; redone")
        entry["settings"] = step.settings
        store.clear_complete()
        total = sum(1 for _ in self.reader.inputs(step.name))
        outcome = await self.executor.run(step, self.reader.inputs(step.name), store, total=total)
        self.reader.remember(step.name, dict(outcome.input_hashes))
        entry = self.run.manifest["stages"].setdefault(step.name, {})
        previous = entry.get("usage", {})
        # Token totals accumulate over resumed executions; counts describe the step as it now is.
        entry.update(step_summary(self.reader, step.name))
        entry["usage"] = {k: previous.get(k, 0) + v for k, v in outcome.usage.as_dict().items()}
        entry["template_version"] = step.stage.version
        entry["model"] = self.executor.model_of(step.stage.role)
        if outcome.models:
            entry["backend"] = outcome.models.get(step.stage.role)
        store.mark_complete({**entry, "key": key})
        self.run.save_manifest()

    def _rewritten(self, step: Step, units: Iterable[dict[str, Any]], settings: Any) -> None:
        store = self.run.stage(step.name)
        key = step_key(self.run, [step.reads, *step.carry_from], settings)
        if self._finished(store, key):
            return
        store.rewrite(iter(units))
        self.reader.remember(step.name, None)
        entry = self.run.manifest["stages"].setdefault(step.name, {})
        entry.update(step_summary(self.reader, step.name))
        store.mark_complete({**entry, "key": key})
        self.run.save_manifest()
