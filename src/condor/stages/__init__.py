"""Pipeline stages: pure request builders and parsers (see :mod:`condor.stages.base`)."""

from condor.stages.answers import AnswerStage
from condor.stages.base import ParseError, Record, Rejection, Stage
from condor.stages.critique import CritiqueStage
from condor.stages.judge import JudgeStage
from condor.stages.questions import QuestionStage, load_few_shot
from condor.stages.refine import RefineStage
from condor.stages.select import select_version
from condor.stages.tasks import TaskType, default_tasks, load_tasks, select_tasks

__all__ = [
    "AnswerStage",
    "CritiqueStage",
    "JudgeStage",
    "ParseError",
    "QuestionStage",
    "Record",
    "RefineStage",
    "Rejection",
    "Stage",
    "TaskType",
    "default_tasks",
    "load_few_shot",
    "load_tasks",
    "select_tasks",
    "select_version",
]
