"""``condor void``, ``condor refine`` and ``condor run``: the paper's two stages and the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from condor.cli.options import (
    LangOpt,
    LeavesOpt,
    ModelFlags,
    OutputOpt,
    QuietOpt,
    RetryOpt,
    RoundsOpt,
    SeedOpt,
    SelectOpt,
    TasksOpt,
    TreeOpt,
    model_options,
)


def _pipeline_overrides(**values: Any) -> dict[str, Any]:
    tasks = values.pop("tasks", None)
    out = {f"pipeline.{name}": value for name, value in values.items()}
    out["pipeline.tasks"] = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    return out


def _execute(flags: ModelFlags, output: Path, mode: str, quiet: bool, retry_failed: bool,
             refine_input: Path | None = None, **pipeline: Any) -> None:
    from condor.api import arun_pipeline
    from condor.cli.runtime import run_job

    cfg = flags.load(_pipeline_overrides(**pipeline))

    async def job():
        return await arun_pipeline(cfg, output, mode=mode, refine_input=refine_input,  # type: ignore[arg-type]
                                   retry_failed=retry_failed, quiet=quiet)

    result = run_job(job)
    for note in result.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    summary = result.export
    typer.echo(f"dataset: {summary.paths['sft']} ({summary.sft} rows)")
    if "preference" in summary.paths:
        typer.echo(f"preference pairs: {summary.paths['preference']} ({summary.preference} rows)")
    typer.echo(f"rejected: {summary.paths['rejected']} ({summary.rejected} rows, each with its reason)")
    typer.echo(f"manifest: {output / 'manifest.json'}")


@model_options
def void(
    output: OutputOpt,
    tree: TreeOpt = None,
    leaves: LeavesOpt = None,
    tasks: TasksOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    retry_failed: RetryOpt = False,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """Condor Void: sample tags, write easy/medium/hard questions per task, filter them, answer them."""
    _execute(flags, output, "void", quiet, retry_failed, tree=tree, leaves=leaves, tasks=tasks, lang=lang, seed=seed)


@model_options
def refine(
    output: OutputOpt,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="Refine this SFT JSONL instead of OUT's Condor Void results.")] = None,
    rounds: RoundsOpt = None,
    select: SelectOpt = None,
    retry_failed: RetryOpt = False,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """Condor Refine: critique and rewrite answers for K rounds, select a version, export the dataset."""
    _execute(flags, output, "refine", quiet, retry_failed, refine_input=input, rounds=rounds, select=select)


@model_options
def run(
    output: OutputOpt,
    tree: TreeOpt = None,
    leaves: LeavesOpt = None,
    tasks: TasksOpt = None,
    rounds: RoundsOpt = None,
    select: SelectOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    retry_failed: RetryOpt = False,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """The whole pipeline: tree sampling, Condor Void, Condor Refine, export to OUT/sft.jsonl."""
    _execute(flags, output, "run", quiet, retry_failed, tree=tree, leaves=leaves, tasks=tasks, rounds=rounds,
             select=select, lang=lang, seed=seed)


def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory made by condor run, void or refine.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write the files (default: RUN).")] = None,
) -> None:
    """Write a finished run's dataset files again (sft, preference, rejected); no model is needed."""
    from condor.api import export_run
    from condor.cli.runtime import run_sync

    summary = run_sync(lambda: export_run(run_dir, output))
    typer.echo(f"dataset: {summary.paths['sft']} ({summary.sft} rows)")
    if "preference" in summary.paths:
        typer.echo(f"preference pairs: {summary.paths['preference']} ({summary.preference} rows)")
    typer.echo(f"rejected: {summary.paths['rejected']} ({summary.rejected} rows)")


def register(app: typer.Typer) -> None:
    app.command("void")(void)
    app.command("refine")(refine)
    app.command("run")(run)
    app.command("export")(export)
