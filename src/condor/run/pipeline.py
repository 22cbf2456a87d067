"""The Condor pipeline as a list of steps: Condor Void, then Condor Refine, then selection.

    plan (sampled tag x task x language)
      -> questions        3 per work item (easy, medium, hard)       model: question_writer
      -> question_filter  length, language, duplicates               no model
      -> answer           version 0                                  model: answerer
      -> answer_filter    empty, short, long, cut off, refusal, language   (the initial dataset D_V)
      -> critique_k, refine_k for k = 1..K                           models: critic, refiner
      -> judge            scores for every version (--select best)   model: judge
      -> select           chosen version, final quality check        no model

:func:`build_steps` returns that list for a run's settings; adding a capability is a new stage or gate
module plus one entry here. A round that cannot critique or refine a record does not drop it: the
record keeps the versions it has, the failure is noted in ``refine_notes``, and it goes on.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

from condor.filters.base import Gate
from condor.filters.contamination import Decontaminate
from condor.filters.gates import AnswerQuality, NearDuplicates, QuestionQuality, SelectVersion
from condor.filters.quality import QualityFilter
from condor.filters.relevance import OnTopic
from condor.filters.text_gates import DegenerateAnswer, DegenerateCritique, DegenerateQuestion, DegenerateRefinement
from condor.llm.settings import sampling
from condor.run.settings import Settings
from condor.run.steps import PLAN, GateStep, ModelStep, SourceStep, Step
from condor.stages.answers import AnswerStage
from condor.stages.base import Stage
from condor.stages.critique import CritiqueStage
from condor.stages.judge import JudgeStage
from condor.stages.questions import QuestionStage
from condor.stages.refine import RefineStage

Mode = Literal["run", "void", "refine"]

#: Names of the model-free steps (model steps are named by their stage).
QUESTION_FILTER, VOID_BASE, IMPORT_BASE, SELECT = "question_filter", "answer_filter", "imported", "select"
#: What each mode exports: the dataset file, and whether refined-over-original pairs exist.
EXPORTS = {
    "run": {"dataset": "sft.jsonl", "preference": True},
    "refine": {"dataset": "sft.jsonl", "preference": True},
    "void": {"dataset": "void.jsonl", "preference": False},
}


def _sampling(settings: Settings, role: str) -> dict[str, float | int]:
    llm = settings.config.backend_for(role)
    return {"max_tokens": llm.max_tokens, "temperature": llm.temperature}


def _model(stage: Stage, settings: Settings, check: Gate, **links) -> ModelStep:
    resamples = settings.config.pipeline.resample_attempts
    return ModelStep(name=stage.name, stage=stage, checks=(check,), resamples=resamples,
                     settings=sampling(settings.config.backend_for(stage.role)), **links)


def question_gates(settings: Settings) -> tuple[Gate, ...]:
    """Length and language, on topic, not from a benchmark, not a duplicate: in that order."""
    p = settings.config.pipeline
    gates: list[Gate] = [QuestionQuality(QualityFilter.from_config(p))]
    if settings.scorer is not None:
        gates.append(OnTopic(settings.scorer, p.relevance_threshold))
    if settings.benchmarks is not None:
        gates.append(Decontaminate(settings.benchmarks))
    gates.append(NearDuplicates(p.near_duplicate_threshold))
    return tuple(gates)


def void_steps(settings: Settings) -> list[Step]:
    """Condor Void: questions for every work item of the plan, filtered, answered, filtered."""
    quality = QualityFilter.from_config(settings.config.pipeline)
    questions = QuestionStage(settings.tasks, settings.few_shot, **_sampling(settings, "question_writer"))
    return [
        _model(questions, settings, DegenerateQuestion(), reads=PLAN),
        GateStep(QUESTION_FILTER, gates=question_gates(settings)),
        _model(AnswerStage(**_sampling(settings, "answerer")), settings, DegenerateAnswer()),
        GateStep(VOID_BASE, gates=(AnswerQuality(quality),)),
    ]


def refine_steps(settings: Settings) -> list[Step]:
    """Condor Refine over the records of the step before it: K rounds, the judge for ``best``, select."""
    quality = QualityFilter.from_config(settings.config.pipeline)
    steps: list[Step] = []
    carried: tuple[str, ...] = ()
    for round_ in range(1, settings.rounds + 1):
        critique = _model(CritiqueStage(round_, **_sampling(settings, "critic")), settings, DegenerateCritique(),
                          carry_from=carried, carries=True)
        refine = _model(RefineStage(round_, **_sampling(settings, "refiner")), settings, DegenerateRefinement(),
                        carries=True)
        steps += [critique, refine]
        carried = (critique.name, refine.name)
    if settings.select == "best":
        judge = ModelStep(name="judge", stage=JudgeStage(**_sampling(settings, "judge")), carry_from=carried, carries=True,
                          settings=sampling(settings.config.backend_for("judge")))
        steps.append(judge)
        carried = (judge.name,)
    steps.append(GateStep(SELECT, carry_from=carried, gates=(SelectVersion(settings.select, quality),)))
    return steps


def import_step(path: Path) -> SourceStep:
    """An existing SFT file as the base of Condor Refine (step ``imported``)."""
    from condor.run.batch import fingerprint, regular_file
    from condor.run.importer import import_units

    # Read twice (fingerprint, then the records): a pipe would be empty the second time.
    regular_file(path, "--input file")

    def produce():
        for input_id, records, rejections in import_units(path):
            yield {"input_id": input_id, "records": records, "rejections": rejections}

    return SourceStep(IMPORT_BASE, produce=produce, fingerprint=fingerprint(path))


def build_steps(settings: Settings, mode: Mode = "run", refine_input: Path | None = None) -> list[Step]:
    """The steps of ``condor run`` (``void``, ``refine``) for these settings.

    ``refine`` reads Condor Void's results from the same run directory, or ``refine_input`` when given.
    """
    steps: list[Step] = []
    if mode in ("run", "void"):
        steps += void_steps(settings)
    if mode in ("run", "refine"):
        if refine_input is not None:
            steps.append(import_step(refine_input))
        refine = refine_steps(settings)
        if not steps:  # refining Condor Void's results of an earlier `condor void` in this directory
            refine[0] = replace(refine[0], reads=VOID_BASE)
        steps += refine
    return steps
