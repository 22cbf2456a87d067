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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from condor.config import RunConfig, load_config
from condor.export.dataset import ExportSummary, export_run, record_export, write_exports
from condor.run.pipeline import EXPORTS, VOID_BASE, Mode, build_steps
from condor.run.records import RunReader, read_run
from condor.run.settings import Settings, effective_settings
from condor.run.steps import Step, resolve

if TYPE_CHECKING:
    from condor.run.executor import Executor
    from condor.run.failures import FailureReport
    from condor.run.progress import ProgressBoard
    from condor.run.target import TargetOutcome

__all__ = [
    "PipelineResult",
    "ajudge_runs",
    "arun_pipeline",
    "build_report",
    "export_dataset",
    "export_run",
    "judge_runs",
    "load_config",
    "merge_runs",
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
    #: With ``pipeline.target``: how the run went toward its target.
    target: "TargetOutcome | None" = None
    #: Failed model calls per step and the verdict (``failures.ok``): false when nothing, or too large a
    #: share of some step's items (``pipeline.max_failure_share``), came through.
    failures: "FailureReport | None" = None

    def rejections_by_reason(self) -> dict[str, int]:
        """Records that left the pipeline, counted by reason (most frequent first)."""
        return dict(Counter(r["reason"] for r in self.reader.rejections()).most_common())

    def kept_previous_by_reason(self) -> dict[str, int]:
        """Critique or refinement rounds that did not replace a kept record's answer, by reason."""
        final = self.reader.final_step
        if final is None:
            return {}
        notes = (n.get("reason", "unknown") for r in self.reader.records(final) for n in r.get("refine_notes", ()))
        return dict(Counter(notes).most_common())


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
    force: bool = False,
) -> PipelineResult:
    """Run (or resume) the pipeline into the run directory ``out``; see :func:`run_pipeline`."""
    from condor.run.failures import failure_report
    from condor.run.orchestrate import StepRunner
    from condor.run.plan import load_or_create_plan
    from condor.run.progress import ProgressBoard
    from condor.run.shards import defer_cross_record_gates, gate_settings, input_files
    from condor.run.directory import RunDirectory
    from condor.run.store import RunStoreError, refuse_symlink
    from condor.run.target import first_draw_leaves, run_to_target

    settings: Settings = effective_settings(config)
    cfg = settings.config
    refine_path = Path(refine_input) if refine_input is not None else None
    chosen = list(steps) if steps is not None else build_steps(settings, mode, refine_path)
    if cfg.pipeline.shard is not None:
        check_shardable(cfg, mode, refine_path)
    run = RunDirectory(out, force=force)
    if refine_path is not None:
        run.refuse_own(refine_path, "--input file")
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
        target = cfg.pipeline.target if mode in ("run", "void") else None
        if mode in ("run", "void"):
            leaves = first_draw_leaves(settings) if target else settings.leaves
            load_or_create_plan(run, cfg.pipeline, settings.tasks, leaves, growing=bool(target))
        if "shard" in run.manifest:
            # A shard leaves cross-record gates to `condor merge`, and notes what the unsharded steps'
            # settings are, so that the merged run's steps look finished to the unsharded command.
            run.manifest["shard"].setdefault("gate_settings", {}).update(gate_settings(chosen))
            run.manifest["shard"]["files"] = input_files(cfg.pipeline)
            chosen, deferred = defer_cross_record_gates(chosen)
            run.manifest["shard"].setdefault("deferred", {}).update(deferred)
            shard = run.manifest["shard"]
            settings.notes.append(
                f"shard {shard['index']}/{shard['count']}: this directory holds part of a run, with near-duplicate "
                "removal left for `condor merge`, which joins all the shards into the dataset")
        cache_path = Path(cfg.cache) if cfg.cache else run.root / "cache.sqlite"
        if not cfg.cache:
            refuse_symlink(cache_path)
        board = ProgressBoard(quiet=quiet)
        executor = await open_executor(cfg, cache_path, board, retry_failed)
        try:
            with board:
                runner = StepRunner(run, executor, retry_failed=retry_failed)
                outcome = None
                if target:
                    outcome = await run_to_target(run, settings, _final_step(chosen), lambda: runner.run_steps(chosen))
                    reader = runner.reader
                else:
                    reader = await runner.run_steps(chosen)
        finally:
            await executor.aclose()
        run.manifest["final"] = {"step": _final_step(chosen), **EXPORTS[mode], "limit": target}
        if outcome is not None:
            run.manifest["target"] = {"target": outcome.target, "kept": outcome.kept, "draws": outcome.draws,
                                      "requests": outcome.requests, "budget": outcome.budget}
        run.save_manifest()
        summary = write_exports(reader, run.root)
        record_export(run, summary)
    result = PipelineResult(reader, summary, [*settings.notes, *runner.notes], outcome)
    # A shard's rows are judged by `condor merge`, which makes the dataset: here only its failures count.
    rows = None if "shard" in reader.manifest else summary.sft
    result.failures = failure_report(reader, rows, cfg.pipeline.max_failure_share,
                                     result.rejections_by_reason() if rows == 0 else None)
    return result


async def open_executor(cfg: RunConfig, cache_path: Path | None, board: "ProgressBoard",
                        retry_failed: bool = False) -> "Executor":
    """The executor the config asks for (``executor: local`` or ``ray``), its backends checked.

    Close it with ``await executor.aclose()``: that releases its backends (and a Ray it started).
    """
    if cfg.executor == "ray":
        from condor.run.ray import RayExecutor

        return await RayExecutor.open(cfg, cache_path, board=board, retry_failed=retry_failed)
    from condor.llm.registry import open_role_backends
    from condor.run.local import LocalExecutor

    backends = await open_role_backends(cfg, cache_path)
    structured = {role: cfg.backend_for(role).structured for role in backends}
    return LocalExecutor(backends, structured=structured, board=board, retry_failed=retry_failed, owns_backends=True)


def check_shardable(cfg: RunConfig, mode: Mode, refine_input: Path | None) -> None:
    """Refuse what a sharded run cannot do: a growing plan, or a dataset from outside instead of a plan.

    (``condor refine`` in a shard's directory refines that shard and needs no splitting.)
    """
    from condor.errors import ConfigError

    if cfg.pipeline.target is not None:
        raise ConfigError("--shard cannot be combined with --target: each shard would grow its own plan; "
                          "give every shard a fixed --leaves instead")
    if refine_input is not None:
        raise ConfigError("--shard splits the plan of `condor run` or `condor void`, not a dataset given with --input; "
                          "split the file instead and refine each part in its own directory")


def run_pipeline(config: RunConfig | str | Path | None, out: str | Path, **options) -> PipelineResult:
    """``condor run`` as a function: sample tags, Condor Void, Condor Refine, export into ``out``.

    ``config`` is a :class:`~condor.config.RunConfig`, a YAML file, or None for the defaults (the
    embedded model). Options: ``mode`` ("run", "void", "refine"), ``steps`` (a step list, default
    :func:`pipeline_steps`), ``refine_input`` (an SFT file to refine), ``retry_failed``, ``quiet``,
    ``force`` (write into a directory that holds other files Condor would write, without a manifest).
    Resumable: calling it again on the same ``out`` continues where it stopped.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    return asyncio.run(arun_pipeline(cfg, out, **options))


def merge_runs(shards: Sequence[str | Path], out: str | Path):
    """``condor merge SHARD... -o OUT``: join the finished shards of a run made with ``--shard i/N`` into
    one run directory, checked (same settings, every shard once, no gap, no duplicate). Near-duplicate
    removal, which each shard left out, is applied over all of them, so the records are those of one
    unsharded run. Returns a :class:`~condor.run.merge.MergeResult`.
    """
    from condor.run.merge import merge_runs as merge

    return merge(shards, out)


def export_dataset(
    run: str | Path,
    format: str,
    out: str | Path | None = None,
    *,
    language: str | Sequence[str] | None = None,
    task: str | Sequence[str] | None = None,
    difficulty: str | Sequence[str] | None = None,
    domain: str | Sequence[str] | None = None,
    min_score: float | None = None,
    min_margin: float | None = None,
    test_size: float | None = None,
    seed: int = 0,
    card: bool = True,
    push_to_hub: str | None = None,
    command: str | None = None,
):
    """``condor export RUN --format F``: the run's data in a trainer's format, with a dataset card.

    ``format`` is one of messages, sharegpt, alpaca, parquet, hf, dpo, critique. Filters take a value,
    a comma-separated string or a list; ``test_size`` splits by leaf. Returns a
    :class:`~condor.export.build.DatasetExport` (rows and files per split, the card, what was left out).
    """
    from condor.export.build import export_dataset as build
    from condor.export.selection import RecordFilter

    rule = RecordFilter.from_text(language=language, task=task, difficulty=difficulty, domain=domain, min_score=min_score)
    return build(run, format, out, rule=rule, min_margin=min_margin, test_size=test_size, seed=seed, card=card,
                 push_to_hub=push_to_hub, command=command)


async def ajudge_runs(config: RunConfig, **options):
    """``condor judge`` on the running event loop; see :func:`judge_runs`."""
    from condor.judge.runner import ajudge_runs as run_judge

    return await run_judge(config, **options)


def judge_runs(config: RunConfig | str | Path | None, **options):
    """``condor judge`` as a function: grade a run, or compare two datasets, resumably.

    ``run=RUN`` grades every answer version of the run (1-10) and compares each refined answer with its
    original in both orders; ``a=..., b=..., out=DIR`` compares two datasets (run directories or JSONL
    files) on their shared questions. The judge is the config's ``judge`` role. Other options:
    ``grade``, ``pairwise``, ``retry_failed``, ``quiet``. Returns a :class:`~condor.judge.runner.JudgeResult`.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    return asyncio.run(ajudge_runs(cfg, **options))


def build_report(run: str | Path, out: str | Path | None = None, **options):
    """``condor report RUN -o report.html``: one offline HTML file about the run.

    Options: ``reference`` (a file of questions to overlay on the question map), ``embeddings`` (False
    skips the diversity numbers and the map), ``map_points``. Returns a :class:`~condor.report.html.Report`.
    """
    from condor.report.html import build_report as build

    return build(run, out, **options)
