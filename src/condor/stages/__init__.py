"""Pipeline stages: pure request builders and parsers (see :mod:`condor.stages.base`).

This package owns the prompts (one template file per stage and language), the parsing of model output
and the task types. It does no file I/O beyond its own packaged prompts: task and few-shot files are
read by :mod:`condor.config_files` and handed in.
"""

from condor.stages.answers import AnswerStage
from condor.stages.base import ParseError, Record, Rejection, Stage
from condor.stages.critique import CritiqueStage
from condor.stages.judge import JudgeStage
from condor.stages.questions import QuestionStage
from condor.stages.refine import RefineStage
from condor.stages.select import select_version
from condor.stages.tasks import TaskType, default_tasks, select_tasks

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
    "select_tasks",
    "select_version",
]
