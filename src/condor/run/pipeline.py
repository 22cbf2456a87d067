"""The Condor pipeline, stage by stage, resumable: Condor Void, then Condor Refine, then export.

    plan (sampled tag x task x language)
      -> questions        3 per work item (easy, medium, hard)       model: question_writer
      -> question_filter  duplicates, length, language               no model
      -> answer           version 0                                  model: answerer
      -> answer_filter    empty, short, long, cut off, refusal, language   (the initial dataset D_V)
      -> critique_k, refine_k for k = 1..K                           models: critic, refiner
      -> judge            scores for every version (--select best)   model: judge
      -> select           chosen version, final quality check        no model
      -> export           sft.jsonl, preference.jsonl, rejected.jsonl

Each step writes its own shard in the run directory (:mod:`condor.run.store`). A model step that has
finished is skipped without reading its inputs; an unfinished one resumes from its shard and the request
cache. Model-free steps are cheap and deterministic, so they are recomputed whole when not finished.

A record that fails a critique or refinement round is not thrown away: it keeps the versions it has,
the failure is noted in ``refine_notes``, and it goes on to the next round. Everything that leaves the
pipeline early is written to ``rejected.jsonl`` with its stage and reason.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from condor.config import RunConfig
from condor.export.formats import preference_row, rejection_row, sft_row
from condor.filters.dedup import Deduplicator
from condor.filters.quality import QualityFilter
from condor.llm.base import LLMBackend
from condor.run.executor import StageRunner
from condor.run.plan import PLAN_FILE, iter_plan, load_or_create_plan
from condor.run.progress import ProgressBoard
from condor.run.store import RunDirectory, StageStore, atomic_write_lines, dumps, record_hash
from condor.stages.answers import AnswerStage
from condor.stages.base import Record, Stage
from condor.stages.critique import CritiqueStage
from condor.stages.judge import JudgeStage
from condor.stages.questions import QuestionStage
from condor.stages.refine import RefineStage
from condor.stages.select import select_version
from condor.stages.tasks import TaskType

VOID_BASE = "answer_filter"
IMPORT_BASE = "imported"
#: Condor Void's steps, in order; a record can leave the pipeline at any of them.
VOID_STEPS = ("questions", "question_filter", "answer", VOID_BASE)


@dataclass
class Settings:
    """Pipeline settings after defaults were applied (see :func:`condor.run.defaults.effective_settings`)."""

    leaves: int
    tasks: dict[str, TaskType]
    rounds: int
    select: str
    few_shot: dict[str, list[str]] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class ExportSummary:
    sft: int
    preference: int
    rejected: int
    paths: dict[str, Path]


@dataclass
class StepView:
    """A step's shard as the current run sees it.

    ``current`` maps the step's present inputs to their content hashes; units of inputs that an
    upstream step has since dropped or changed are not part of it (None: every latest unit is).
    """

    store: StageStore
    current: dict[str, str | None] | None = None

    @property
    def name(self) -> str:
        return self.store.name

    def records(self) -> Iterator[Record]:
        return self.store.iter_records(self.current)

    def rejections(self) -> Iterator[dict[str, Any]]:
        return self.store.iter_rejections(self.current)

    def failures(self) -> Iterator[dict[str, Any]]:
        return self.store.iter_failures(self.current)


class Pipeline:
    """One run directory's pipeline. Backends are given per role (one object may serve several roles)."""

    def __init__(
        self,
        cfg: RunConfig,
        settings: Settings,
        out: str | Path,
        backends: dict[str, LLMBackend],
        *,
        board: ProgressBoard | None = None,
        retry_failed: bool = False,
    ) -> None:
        self.cfg = cfg
        self.settings = settings
        self.run = RunDirectory(out)
        # The settings of the latest execution, for provenance (names of key variables, never keys).
        self.run.manifest["config"] = cfg.model_dump(mode="json")
        self.run.manifest["settings"] = {
            "leaves": settings.leaves, "tasks": list(settings.tasks), "rounds": settings.rounds, "select": settings.select,
        }
        self.backends = backends
        self.board = board or ProgressBoard(quiet=True)
        self.retry_failed = retry_failed
        self.quality = QualityFilter.from_config(cfg.pipeline)
        self._views: dict[str, StepView] = {}

    # ------------------------------------------------------------------------------ building blocks
    @staticmethod
    def _count(view: "StepView") -> int:
        return sum(1 for _ in view.records())

    async def _model_step(
        self, stage: Stage, inputs: Callable[[], Iterator[Record]], total: int, depends_on: Iterable[str] = ()
    ) -> "StepView":
        """Run (or resume) a model step; a finished one is skipped unless the steps it reads changed.

        When an upstream step was redone (other filter settings, retried failures), the runner goes over
        the inputs again: finished ones are skipped without a call, new ones are processed.
        """
        store = self.run.stage(stage.name)
        key = self._step_key(depends_on, None)
        if store.is_complete() and not self.retry_failed and self._finished_key(store) == key:
            return self._view(store, inputs)
        store.clear_complete()
        backend = self.backends[stage.role]
        runner = StageRunner(
            stage,
            backend,
            store,
            structured=self.cfg.backend_for(stage.role).structured,
            board=self.board,
            retry_failed=self.retry_failed,
            collect_hashes=True,
        )
        outcome = await runner.run(inputs(), total=total)
        summary = self._summarise(store)
        entry = self.run.manifest["stages"].setdefault(stage.name, {})
        previous = entry.get("usage", {})
        usage = outcome.usage.as_dict()
        # Token totals accumulate over resumed executions; counts describe the shard as it now is.
        entry.update(summary)
        entry["usage"] = {k: previous.get(k, 0) + v for k, v in usage.items()}
        entry["template_version"] = stage.version
        entry["model"] = backend.identity
        store.mark_complete({**entry, "key": key})
        self.run.save_manifest()
        return self._remember(StepView(store, dict(outcome.input_hashes)))

    def _view(self, store: StageStore, inputs: Callable[[], Iterator[Record]]) -> "StepView":
        return self._remember(StepView(store, {record["id"]: record_hash(record) for record in inputs()}))

    def _remember(self, view: "StepView") -> "StepView":
        self._views[view.name] = view
        return view

    def _local_step(
        self,
        name: str,
        produce: Callable[[], Iterable[tuple[str, list[Record], list[dict]]]],
        *,
        depends_on: Iterable[str] = (),
        settings: Any = None,
    ) -> "StepView":
        """A model-free step, redone whenever its inputs or settings changed since it last finished.

        The key is built from the completion markers of the steps it reads and its own settings, so
        that e.g. a second run with ``--rounds 2`` selects among the new versions instead of reusing
        the old selection.
        """
        store = self.run.stage(name)
        key = self._step_key(depends_on, settings)
        if store.is_complete() and not self.retry_failed and self._finished_key(store) == key:
            return self._local_view(store)
        store.clear_complete()
        lines = (
            dumps({"input_id": input_id, "records": records, "rejections": rejections, "seq": seq})
            for seq, (input_id, records, rejections) in enumerate(produce())
        )
        atomic_write_lines(store.units_path, lines)
        entry = self.run.manifest["stages"].setdefault(name, {})
        entry.update(self._summarise(store))
        store.mark_complete({**entry, "key": key})
        self.run.save_manifest()
        return self._local_view(store)

    def _local_view(self, store: StageStore) -> "StepView":
        # A model-free step is rewritten whole, so everything in it is current.
        return self._remember(StepView(store, None))

    def _step_key(self, depends_on: Iterable[str], settings: Any) -> str:
        markers = []
        for upstream in depends_on:
            path = self.run.stage(upstream).complete_path
            markers.append(path.read_text(encoding="utf-8") if path.exists() else None)
        blob = json.dumps({"upstream": markers, "settings": settings}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @staticmethod
    def _finished_key(store: StageStore) -> str | None:
        try:
            return json.loads(store.complete_path.read_text(encoding="utf-8")).get("key")
        except (OSError, ValueError):
            return None

    def _summarise(self, store: StageStore) -> dict[str, int]:
        units = records = rejections = failures = 0
        for unit in store.iter_units():
            units += 1
            records += len(unit.get("records", ()))
            rejections += len(unit.get("rejections", ()))
            failures += 1 if unit.get("error") else 0
        return {"units": units, "records": records, "rejections": rejections, "failures": failures}

    # ------------------------------------------------------------------------------ Condor Void
    async def void(self) -> None:
        settings, p = self.settings, self.cfg.pipeline
        total = load_or_create_plan(self.run, p, settings.tasks, settings.leaves)
        llm = self.cfg.backend_for("question_writer")
        questions = await self._model_step(
            QuestionStage(settings.tasks, settings.few_shot, max_tokens=llm.max_tokens, temperature=llm.temperature),
            lambda: iter_plan(self.run),
            total,
        )
        kept = self._local_step(
            "question_filter",
            lambda: self._filter_questions(questions),
            depends_on=["questions"],
            settings=[p.min_chars, p.max_chars, p.near_duplicate_threshold],
        )
        answerer = self.cfg.backend_for("answerer")
        answers = await self._model_step(
            AnswerStage(max_tokens=answerer.max_tokens, temperature=answerer.temperature),
            kept.records,
            self._count(kept),
            depends_on=["question_filter"],
        )
        self._local_step(
            VOID_BASE, lambda: self._filter_answers(answers), depends_on=["answer"], settings=[p.min_chars, p.max_chars]
        )

    def _filter_questions(self, questions: "StepView") -> Iterator[tuple[str, list[Record], list[dict]]]:
        # Sorted by id so that which copy of a duplicate survives does not depend on completion order.
        records = sorted(questions.records(), key=lambda r: r["id"])
        dedup = Deduplicator(threshold=self.cfg.pipeline.near_duplicate_threshold)
        for record in records:
            issue = self.quality.question_issue(record)
            if issue is not None:
                yield record["id"], [], [_rejection("question_filter", issue.reason, issue.detail, record)]
                continue
            duplicate = dedup.check(record["id"], record["question"])
            if duplicate is not None:
                rejection = _rejection("question_filter", duplicate.reason, duplicate.detail, record)
                yield record["id"], [], [rejection]
                continue
            yield record["id"], [record], []

    def _filter_answers(self, answers: "StepView") -> Iterator[tuple[str, list[Record], list[dict]]]:
        for record in sorted(answers.records(), key=lambda r: r["id"]):
            issue = self.quality.answer_issue(record)
            if issue is not None:
                yield record["id"], [], [_rejection("answer_filter", issue.reason, issue.detail, record)]
            else:
                yield record["id"], [record], []

    def import_dataset(self, path: Path) -> None:
        """Make an existing SFT file the base of Condor Refine (step ``imported``)."""
        from condor.run.batch import fingerprint
        from condor.run.importer import import_units

        self.run.bind_inputs("refine_input", fingerprint(path))
        self._local_step(IMPORT_BASE, lambda: import_units(path), settings=fingerprint(path))

    # ------------------------------------------------------------------------------ Condor Refine
    async def refine(self, base: str = VOID_BASE) -> None:
        """K critique/refine rounds over the records of step ``base``, then judging and selection."""
        settings = self.settings
        current = self._views.get(base) or self._local_view(self.run.stage(base))
        current_inputs: Callable[[], Iterator[Record]] = current.records
        total = self._count(current)
        previous = base
        for round_ in range(1, settings.rounds + 1):
            critic, refiner = self.cfg.backend_for("critic"), self.cfg.backend_for("refiner")
            critiques = await self._model_step(
                CritiqueStage(round_, max_tokens=critic.max_tokens, temperature=critic.temperature),
                current_inputs,
                total,
                depends_on=[previous],
            )
            refined = await self._model_step(
                RefineStage(round_, max_tokens=refiner.max_tokens, temperature=refiner.temperature),
                critiques.records,
                self._count(critiques),
                depends_on=[critiques.name],
            )
            current_inputs = _carry(refined, [critiques, refined], round_)
            previous = refined.name
        if settings.select == "best":
            judge_cfg = self.cfg.backend_for("judge")
            judged = await self._model_step(
                JudgeStage(max_tokens=judge_cfg.max_tokens, temperature=judge_cfg.temperature),
                current_inputs,
                total,
                depends_on=[previous],
            )
            current_inputs = _carry(judged, [judged], None)
        allowed = {record["id"] for record in current.records()}
        steps = [base] + [f"{kind}_{r}" for r in range(1, settings.rounds + 1) for kind in ("critique", "refine")]
        if settings.select == "best":
            steps.append("judge")
        p = self.cfg.pipeline
        self._local_step(
            "select",
            lambda: self._select(current_inputs(), allowed),
            depends_on=steps,
            settings=[settings.rounds, settings.select, base, p.min_chars, p.max_chars],
        )

    def _select(self, records: Iterable[Record], allowed: set[str]) -> Iterator[tuple[str, list[Record], list[dict]]]:
        mode = self.settings.select
        for record in sorted(records, key=lambda r: r["id"]):
            if record["id"] not in allowed:
                continue  # left over from an earlier plan of the base step; not part of this dataset
            try:
                chosen = select_version(record, mode)
            except ValueError as exc:
                yield record["id"], [], [_rejection("select", "no_versions", str(exc), record)]
                continue
            issue = self.quality.answer_issue(chosen)
            if issue is not None and chosen["chosen"]["version"] != 0:
                fallback = {**record, "chosen": {"version": 0, "mode": mode, "fallback": True,
                                                  "reason": f"version {chosen['chosen']['version']} failed the final check ({issue.reason}); kept the original"},
                            "answer": record["versions"][0]["answer"]}
                chosen, issue = fallback, self.quality.answer_issue(fallback)
            if issue is not None:
                yield record["id"], [], [_rejection("select", issue.reason, issue.detail, record)]
            else:
                yield record["id"], [chosen], []

    # ------------------------------------------------------------------------------ export
    def export(self, *, final: str = "select", sft_name: str = "sft.jsonl", base: str = VOID_BASE) -> ExportSummary:
        """Write the dataset, the preference pairs and every rejection of this run.

        ``final`` is the step whose records make the dataset (``select``, or ``answer_filter`` for
        Condor Void alone); ``base`` is where Condor Refine started (Void's results or an import).
        """
        root = self.run.root
        final_store = self.run.stage(final)
        records = sorted(final_store.iter_records(), key=lambda r: r["id"])  # a model-free step: all current
        if final != "select":
            records = [{**r, "answer": r["versions"][-1]["answer"]} for r in records]
        sft = atomic_write_lines(root / sft_name, (dumps(sft_row(r)) for r in records))
        preference = 0
        if final == "select":
            pairs = [row for row in (preference_row(r) for r in records) if row is not None]
            preference = atomic_write_lines(root / "preference.jsonl", (dumps(p) for p in pairs))
        steps = VOID_STEPS if base == VOID_BASE else (IMPORT_BASE,)
        if final == "select":
            steps = (*steps, "select")
        rejected = atomic_write_lines(root / "rejected.jsonl", (dumps(r) for r in self._all_rejections(steps)))
        paths = {"sft": root / sft_name, "rejected": root / "rejected.jsonl"}
        if final == "select":
            paths["preference"] = root / "preference.jsonl"
        self.run.manifest["export"] = {"sft": sft, "preference": preference, "rejected": rejected,
                                       "files": {k: str(v.name) for k, v in paths.items()}}
        self.run.save_manifest()
        return ExportSummary(sft, preference, rejected, paths)

    def _all_rejections(self, steps: tuple[str, ...]) -> Iterator[dict[str, Any]]:
        """Rejections and failures of the steps where a record leaves the pipeline (not carried ones)."""
        for name in steps:
            view = self._exported_view(name)
            if view is None:
                continue
            for rejection in view.rejections():
                yield rejection_row(rejection)
            for unit in view.failures():
                yield {"stage": name, "reason": "backend_error", "detail": unit.get("error", ""),
                       "id": unit["input_id"], "record": unit.get("input") or {}}

    def _exported_view(self, name: str) -> StepView | None:
        """The step as this run sees it, rebuilt from disk when this invocation did not run it."""
        if name in self._views:
            return self._views[name]
        store = self.run.stage(name)
        if not store.units_path.exists():
            return None
        if name == "questions" and (self.run.root / PLAN_FILE).exists():
            return StepView(store, {r["id"]: record_hash(r) for r in iter_plan(self.run)})
        if name == "answer":
            kept = self._exported_view("question_filter")
            return StepView(store, {r["id"]: record_hash(r) for r in kept.records()}) if kept else None
        return StepView(store, None)


def _rejection(stage: str, reason: str, detail: str, record: Record) -> dict[str, Any]:
    return {"stage": stage, "reason": reason, "detail": detail, "record": record}


def _carry(view: "StepView", failed_in: list["StepView"], round_: int | None) -> Callable[[], Iterator[Record]]:
    """Inputs for the next step: this step's outputs plus, unchanged, the records it could not process."""

    def records() -> Iterator[Record]:
        yield from view.records()
        for step in failed_in:
            for rejection in step.rejections():
                yield _noted(rejection["record"], step.name, rejection.get("reason", ""), rejection.get("detail", ""), round_)
            for unit in step.failures():
                if unit.get("input"):
                    yield _noted(unit["input"], step.name, "backend_error", unit.get("error", ""), round_)

    return records


def _noted(record: Record, stage: str, reason: str, detail: str, round_: int | None) -> Record:
    notes = list(record.get("refine_notes", []))
    notes.append({"round": round_, "stage": stage, "reason": reason, "detail": detail[:300]})
    return {**record, "refine_notes": notes}


