"""The Python API: what the ``condor`` commands do, as functions.

    from condor import load_config, run_pipeline
    cfg = load_config("run.yaml", {"llm.base_url": "http://localhost:8000/v1", "llm.model": "my-model"})
    result = run_pipeline(cfg, "runs/first")
    print(result.export.paths["sft"], result.export.sft)

:func:`run_pipeline` takes the step list too (:func:`pipeline_steps` builds the default one), so a
new filter or stage joins a run without touching the executor or the CLI.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from condor.config import RunConfig, load_config
from condor.export.dataset import ExportSummary, export_run, record_export, write_exports
from condor.run.pipeline import EXPORTS, VOID_BASE, Mode, build_steps
from condor.run.records import RunReader, read_run
from condor.run.settings import Settings, effective_settings
from condor.run.steps import Step, resolve

__all__ = [
    "PipelineResult",
    "arun_pipeline",
    "export_run",
    "load_config",
    "pipeline_steps",
    "read_run",
    "run_pipeline",
]


@dataclass
class PipelineResult:
    """What a pipeline run left: the reader of its run directory and the exported files."""

    reader: RunReader
    export: ExportSummary
    notes: list[str] = field(default_factory=list)


def pipeline_steps(config: RunConfig, mode: Mode = "run", refine_input: str | Path | None = None) -> list[Step]:
    """The default steps of ``condor run`` (or ``void``, ``refine``) for ``config``."""
    return build_steps(effective_settings(config), mode, Path(refine_input) if refine_input else None)


def _final_step(steps: Sequence[Step]) -> str:
    return resolve(steps)[-1].name


async def arun_pipeline(
    config: RunConfig,
    out: str | Path,
    *,
    mode: Mode = "run",
    steps: Sequence[Step] | None = None,
    refine_input: str | Path | None = None,
    retry_failed: bool = False,
    quiet: bool = True,
) -> PipelineResult:
    """Run (or resume) the pipeline into the run directory ``out``; see :func:`run_pipeline`."""
    from condor.llm.registry import close_backends, open_role_backends
    from condor.run.local import LocalExecutor
    from condor.run.orchestrate import StepRunner
    from condor.run.plan import load_or_create_plan
    from condor.run.progress import ProgressBoard
    from condor.run.store import RunDirectory, RunStoreError

    settings: Settings = effective_settings(config)
    cfg = settings.config
    refine_path = Path(refine_input) if refine_input is not None else None
    chosen = list(steps) if steps is not None else build_steps(settings, mode, refine_path)
    run = RunDirectory(out)
    with run.lock():
        if mode == "refine" and refine_path is None and not run.stage(VOID_BASE).is_complete():
            raise RunStoreError(
                f"{run.root} has no finished Condor Void results; run `condor void -o {run.root}` first "
                "or pass --input FILE"
            )
        # The settings of this execution, for provenance (names of key variables, never keys).
        run.manifest["config"] = cfg.model_dump(mode="json")
        run.manifest["settings"] = {"leaves": settings.leaves, "tasks": list(settings.tasks),
                                    "rounds": settings.rounds, "select": settings.select}
        if mode in ("run", "void"):
            load_or_create_plan(run, cfg.pipeline, settings.tasks, settings.leaves)
        cache_path = Path(cfg.cache) if cfg.cache else run.root / "cache.sqlite"
        backends = await open_role_backends(cfg, cache_path)
        try:
            with ProgressBoard(quiet=quiet) as board:
                structured = {role: cfg.backend_for(role).structured for role in backends}
                executor = LocalExecutor(backends, structured=structured, board=board, retry_failed=retry_failed)
                reader = await StepRunner(run, executor, retry_failed=retry_failed).run_steps(chosen)
        finally:
            await close_backends(backends)
        run.manifest["final"] = {"step": _final_step(chosen), **EXPORTS[mode]}
        run.save_manifest()
        summary = write_exports(reader, run.root)
        record_export(run, summary)
    return PipelineResult(reader, summary, settings.notes)


def run_pipeline(config: RunConfig | str | Path | None, out: str | Path, **options) -> PipelineResult:
    """``condor run`` as a function: sample tags, Condor Void, Condor Refine, export into ``out``.

    ``config`` is a :class:`~condor.config.RunConfig`, a YAML file, or None for the defaults (the
    embedded model). Options: ``mode`` ("run", "void", "refine"), ``steps`` (a step list, default
    :func:`pipeline_steps`), ``refine_input`` (an SFT file to refine), ``retry_failed``, ``quiet``.
    Resumable: calling it again on the same ``out`` continues where it stopped.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    return asyncio.run(arun_pipeline(cfg, out, **options))
