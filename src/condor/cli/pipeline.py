"""``condor void``, ``condor refine`` and ``condor run``: the paper's two stages and the whole pipeline.

(``condor export`` is in :mod:`condor.cli.export`.)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from condor.config import RaySettings, RunConfig
from condor.cli.options import (
    _help,
    ForceOpt,
    LangOpt,
    LeavesOpt,
    MaxFailureShareOpt,
    ModelFlags,
    OutputOpt,
    QuietOpt,
    RetryOpt,
    RoundsOpt,
    SeedOpt,
    SelectOpt,
    TasksOpt,
    TreeOpt,
    fail,
    model_options,
    pipeline_option,
)


TargetOpt = pipeline_option("target", "--target", int, min=1)
MaxRequestsOpt = pipeline_option("max_requests", "--max-requests", int, min=1)
ShardOpt = pipeline_option("shard", "--shard", str, "Each shard writes its own run directory.")
ExecutorOpt = Annotated[Optional[str], typer.Option(
    "--executor", help=_help(RunConfig, "executor") + " (--ray-address implies ray)")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help=_help(RaySettings, "address"))]
DecontaminateOpt = Annotated[Optional[list[Path]], typer.Option(
    "--decontaminate", help="Benchmark prompts file (JSONL, JSON array or plain lines); repeat for several. "
    "Questions that share 13 words in a row with one are dropped.")]


def _pipeline_overrides(**values: Any) -> dict[str, Any]:
    tasks = values.pop("tasks", None)
    benchmarks = values.pop("decontaminate", None)
    out = {f"pipeline.{name}": value for name, value in values.items()}
    out["pipeline.tasks"] = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    out["pipeline.decontaminate"] = [str(p) for p in benchmarks] if benchmarks else None
    return out


def _execution_overrides(executor: str | None, ray_address: str | None) -> dict[str, Any]:
    if executor is None and ray_address is not None:
        executor = "ray"
    elif executor == "local" and ray_address is not None:
        fail(f"--ray-address {ray_address} is for the Ray executor, but --executor local runs in this process; "
             "drop one of them")
    return {"executor": executor, "ray.address": ray_address}


def _execute(ctx: typer.Context, flags: ModelFlags, output: Path, mode: str, quiet: bool, retry_failed: bool,
             force: bool, refine_input: Path | None = None, executor: str | None = None,
             ray_address: str | None = None, **pipeline: Any) -> None:
    from condor.api import arun_pipeline
    from condor.cli.runtime import report_failures, run_job

    cfg = flags.load({**_pipeline_overrides(**pipeline), **_execution_overrides(executor, ray_address)})

    async def job():
        return await arun_pipeline(cfg, output, mode=mode, refine_input=refine_input,  # type: ignore[arg-type]
                                   retry_failed=retry_failed, quiet=quiet, force=force)

    result = run_job(job)
    for note in result.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    if result.target is not None and result.target.short_by:
        t = result.target
        typer.secho(f"target {t.target} rows: {t.kept} made after {t.requests} requests (budget {t.budget}); "
                    f"{t.short_by} short. Raise --max-requests and rerun the same command to go on.",
                    err=True, fg=typer.colors.YELLOW)
    summary = result.export
    typer.echo(f"dataset: {summary.paths['sft']} ({summary.sft} rows)")
    if "preference" in summary.paths:
        typer.echo(f"preference pairs: {summary.paths['preference']} ({summary.preference} rows)")
    typer.echo(f"rejected: {summary.paths['rejected']} ({summary.rejected} rows, each with its reason)")
    _by_reason("  rejected", result.rejections_by_reason())
    _by_reason("  kept the previous version", result.kept_previous_by_reason())
    typer.echo(f"manifest: {output / 'manifest.json'}")
    if result.failures is not None:
        report_failures(result.failures, ctx)


def _by_reason(label: str, counts: dict[str, int], shown: int = 8) -> None:
    if not counts:
        return
    parts = [f"{reason} {n}" for reason, n in list(counts.items())[:shown]]
    more = len(counts) - shown
    typer.echo(f"{label}: " + ", ".join(parts) + (f", and {more} more reasons" if more > 0 else ""))


@model_options
def void(
    ctx: typer.Context,
    output: OutputOpt,
    tree: TreeOpt = None,
    leaves: LeavesOpt = None,
    tasks: TasksOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    target: TargetOpt = None,
    max_requests: MaxRequestsOpt = None,
    decontaminate: DecontaminateOpt = None,
    shard: ShardOpt = None,
    max_failure_share: MaxFailureShareOpt = None,
    retry_failed: RetryOpt = False,
    force: ForceOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """Condor Void: sample tags, write easy/medium/hard questions per task, filter them, answer them."""
    _execute(ctx, flags, output, "void", quiet, retry_failed, force, executor=executor, ray_address=ray_address,
             tree=tree, leaves=leaves, tasks=tasks, lang=lang, seed=seed, target=target, max_requests=max_requests,
             decontaminate=decontaminate, shard=shard, max_failure_share=max_failure_share)


@model_options
def refine(
    ctx: typer.Context,
    output: OutputOpt,
    input: Annotated[Optional[Path], typer.Option("--input", "-i", help="Refine this SFT JSONL instead of OUT's Condor Void results.")] = None,
    rounds: RoundsOpt = None,
    select: SelectOpt = None,
    max_failure_share: MaxFailureShareOpt = None,
    retry_failed: RetryOpt = False,
    force: ForceOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """Condor Refine: critique and rewrite answers for K rounds, select a version, export the dataset."""
    _execute(ctx, flags, output, "refine", quiet, retry_failed, force, refine_input=input, executor=executor,
             ray_address=ray_address, rounds=rounds, select=select, max_failure_share=max_failure_share)


@model_options
def run(
    ctx: typer.Context,
    output: OutputOpt,
    tree: TreeOpt = None,
    leaves: LeavesOpt = None,
    tasks: TasksOpt = None,
    rounds: RoundsOpt = None,
    select: SelectOpt = None,
    lang: LangOpt = None,
    seed: SeedOpt = None,
    target: TargetOpt = None,
    max_requests: MaxRequestsOpt = None,
    decontaminate: DecontaminateOpt = None,
    shard: ShardOpt = None,
    max_failure_share: MaxFailureShareOpt = None,
    retry_failed: RetryOpt = False,
    force: ForceOpt = False,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """The whole pipeline: tree sampling, Condor Void, Condor Refine, export to OUT/sft.jsonl."""
    _execute(ctx, flags, output, "run", quiet, retry_failed, force, executor=executor, ray_address=ray_address,
             tree=tree, leaves=leaves, tasks=tasks, rounds=rounds, select=select, lang=lang, seed=seed,
             target=target, max_requests=max_requests, decontaminate=decontaminate, shard=shard,
             max_failure_share=max_failure_share)


def register(app: typer.Typer) -> None:
    app.command("void")(void)
    app.command("refine")(refine)
    app.command("run")(run)
