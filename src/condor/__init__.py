"""Condor: turn any chat LLM into a factory of supervised fine-tuning and preference data.

The package root stays light on purpose: importing ``condor`` loads no backend, no model and no
heavy dependency; the public functions import what they need when called. Subpackages, top down:

- ``condor.cli``: the ``condor`` command, a thin layer over this API.
- ``condor.export``: dataset files from a run directory, in trainers' formats, with a dataset card.
- ``condor.judge``: LLM-as-judge (grades, pairwise in both orders) and its statistics.
- ``condor.report``: metrics, question diversity and the offline HTML report.
- ``condor.run``: steps as data, the executors that run them, the run directory and its reader.
- ``condor.stages`` / ``condor.filters``: pure prompt building and parsing; pure, model-free gates.
- ``condor.train``: ``condor train`` (TRL, full or LoRA) and ``condor iterate`` (self-iteration with a gate).
- ``condor.tree``: the World Knowledge Tree.
- ``condor.llm``: one async interface over chat models, backends by kind, the request cache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "GateStep",
    "ModelStep",
    "RunConfig",
    "arun_pipeline",
    "build_report",
    "export_dataset",
    "export_run",
    "insert_after",
    "iterate",
    "judge_runs",
    "load_config",
    "merge_runs",
    "pipeline_steps",
    "read_run",
    "run_pipeline",
    "train_model",
]

# name -> module; resolved on first use so that `import condor` stays instant.
_LAZY = {
    "GateStep": "condor.run.steps",
    "ModelStep": "condor.run.steps",
    "insert_after": "condor.run.steps",
    "iterate": "condor.train.iterate",
    "train_model": "condor.train.trainer",
    "RunConfig": "condor.config",
    "load_config": "condor.config",
    "arun_pipeline": "condor.api",
    "build_report": "condor.api",
    "export_dataset": "condor.api",
    "export_run": "condor.api",
    "judge_runs": "condor.api",
    "merge_runs": "condor.api",
    "pipeline_steps": "condor.api",
    "read_run": "condor.api",
    "run_pipeline": "condor.api",
}

if TYPE_CHECKING:
    from condor.api import (
        arun_pipeline,
        build_report,
        export_dataset,
        export_run,
        judge_runs,
        pipeline_steps,
        read_run,
        run_pipeline,
    )
    from condor.config import RunConfig, load_config
    from condor.run.steps import GateStep, ModelStep, insert_after
    from condor.train.iterate import iterate
    from condor.train.trainer import train_model


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'condor' has no attribute {name!r}")
