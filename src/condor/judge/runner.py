"""``condor judge``: grade a run, or compare two datasets, as resumable model steps.

- ``--in RUN`` adds steps to the run itself: ``judge_grade`` (every answer version graded 1-10 on the
  rubric of :mod:`condor.stages.judge`) and, for a refined run, ``judge_pairs`` + ``judge_pairwise``
  (original against final answer, both orders, :mod:`condor.stages.pairwise`).
- ``--a X --b Y -o OUT`` makes a judge run directory: ``pairs`` (the shared questions, a source step)
  and ``pairwise``.

The steps run through the orchestrator and the local executor like every pipeline step, so a finished
judgement makes zero model calls when asked again, and a killed one resumes. Only the ``judge`` role's
backend is opened: a separate judge model is ``roles: {judge: ...}`` in the config, or the model flags of
the command. The summary (rates with intervals, consistency, length control, grades) goes to
``judge.json`` and the manifest. What is left out: multi-turn conversations and reference answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condor.config import RunConfig
from condor.judge.results import (
    COMPARE_PAIRS,
    COMPARE_STEP,
    GRADE_STEP,
    PAIRS_STEP,
    PAIRWISE_STEP,
    SUMMARY_FILE,
    SUMMARY_FORMAT,
    summarise_grades,
    summarise_pairs,
)
from condor.judge.sources import Comparison, JudgeInputError, OriginalVsFinal, compare_sides
from condor.judge.stats import GradeStats, PairwiseStats
from condor.run.steps import GateStep, ModelStep, SourceStep, Step
from condor.stages.judge import JudgeStage
from condor.stages.pairwise import PairwiseStage


@dataclass
class JudgeResult:
    """Where the results are, and their summary."""

    root: Path
    summary: dict[str, Any]
    grades: GradeStats | None = None
    pairwise: PairwiseStats | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.root / SUMMARY_FILE


def _sampling(config: RunConfig) -> dict[str, Any]:
    llm = config.backend_for("judge")
    return {"max_tokens": llm.max_tokens, "temperature": llm.temperature}


def run_steps(config: RunConfig, final: str, *, grade: bool, pairwise: bool) -> list[Step]:
    """The judge's steps over a run whose final step is ``final``."""
    steps: list[Step] = []
    if grade:
        steps.append(ModelStep(GRADE_STEP, stage=JudgeStage(**_sampling(config)), reads=final, carries=True))
    if pairwise:
        steps.append(GateStep(PAIRS_STEP, reads=final, gates=(OriginalVsFinal(),)))
        steps.append(ModelStep(PAIRWISE_STEP, stage=PairwiseStage(**_sampling(config)), carries=True))
    return steps


def compare_steps(config: RunConfig, comparison: Comparison) -> list[Step]:
    records = comparison.records

    def produce():
        for record in records:
            yield {"input_id": record["id"], "records": [record], "rejections": []}

    return [SourceStep(COMPARE_PAIRS, produce=produce, fingerprint=comparison.fingerprint()),
            ModelStep(COMPARE_STEP, stage=PairwiseStage(**_sampling(config)), carries=True)]


def _failures(reader, names: list[str]) -> dict[str, int]:
    out = {}
    for name in names:
        failed = sum(1 for _ in reader.step_failures(name)) + sum(1 for _ in reader.step_rejections(name))
        out[name] = failed
    return out


async def ajudge_runs(
    config: RunConfig,
    *,
    run: str | Path | None = None,
    a: str | None = None,
    b: str | None = None,
    out: str | Path | None = None,
    grade: bool = True,
    pairwise: bool = True,
    retry_failed: bool = False,
    quiet: bool = True,
) -> JudgeResult:
    """Judge ``run`` (grades, and original against final) or compare ``a`` with ``b`` into ``out``."""
    from condor.llm.registry import backend_session
    from condor.run.local import LocalExecutor
    from condor.run.orchestrate import StepRunner
    from condor.run.progress import ProgressBoard
    from condor.run.records import RunReader
    from condor.run.directory import RunDirectory
    from condor.run.store import atomic_write_text

    notes: list[str] = []
    summary: dict[str, Any] = {"format": SUMMARY_FORMAT}
    if run is not None:
        if a is not None or b is not None:
            raise JudgeInputError("give either --in RUN (judge one run) or --a and --b (compare two), not both")
        if out is not None and Path(out).resolve() != Path(run).resolve():
            raise JudgeInputError("--in RUN writes its results into RUN itself; leave out --output")
        root = Path(run)
        reader = RunReader(root)  # refuses a directory that is not a run, before anything is created
        final = reader.final_step
        if final is None or not reader.is_complete(final):
            raise JudgeInputError(f"{root}: the run has not finished; rerun the command that made it, then judge it")
        refined = bool((reader.manifest.get("final") or {}).get("preference"))
        if pairwise and not refined:
            notes.append("the run has no refinement rounds, so there is no original-against-final comparison")
        steps = run_steps(config, final, grade=grade, pairwise=pairwise and refined)
        if not steps:
            raise JudgeInputError("nothing to judge: grading is off and the run has no refinements to compare")
        summary.update({"kind": "run", "run": str(root)})
    else:
        if a is None or b is None:
            raise JudgeInputError("give --in RUN to judge one run, or both --a and --b to compare two datasets")
        if out is None:
            raise JudgeInputError("comparing two datasets needs --output, a directory for the judge run")
        root = Path(out)
        comparison = compare_sides(a, b)
        steps = compare_steps(config, comparison)
        summary.update({"kind": "compare", "comparison": comparison.describe()})

    settings = config.backend_for("judge")
    directory = RunDirectory(root)
    with directory.lock():
        cache_path = Path(config.cache) if config.cache else directory.root / "cache.sqlite"
        async with backend_session(settings, cache_path) as backend:
            with ProgressBoard(quiet=quiet) as board:
                executor = LocalExecutor({"judge": backend}, structured={"judge": settings.structured},
                                         board=board, retry_failed=retry_failed)
                reader = await StepRunner(directory, executor, retry_failed=retry_failed).run_steps(steps)
            summary["judge_model"] = backend.identity
        grades = pairs = None
        if run is not None and grade:
            grades = summarise_grades(list(reader.records(GRADE_STEP)))
            summary["grades"] = grades.as_dict()
        compare_name = PAIRWISE_STEP if run is not None else COMPARE_STEP
        if compare_name in [s.name for s in steps]:
            pairs = summarise_pairs(list(reader.records(compare_name)))
            summary["pairwise"] = pairs.as_dict()
            summary["pairwise"]["sides"] = ({"a": "original answer (version 0)", "b": "final answer"}
                                            if run is not None else {"a": a, "b": b})
        summary["unjudged"] = _failures(reader, [s.name for s in steps if isinstance(s, ModelStep)])
        summary["notes"] = notes
        atomic_write_text(directory.root / SUMMARY_FILE, json.dumps(summary, indent=2, ensure_ascii=False))
        directory.manifest["judge"] = {"file": SUMMARY_FILE, "kind": summary["kind"],
                                       "steps": [s.name for s in steps]}
        directory.save_manifest()
    return JudgeResult(directory.root, summary, grades, pairs, notes)
