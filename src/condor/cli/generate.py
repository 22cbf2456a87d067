"""``condor generate``: batch inference with cache and resume, the engine's own command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from condor.cli.options import ForceOpt, MaxFailureShareOpt, ModelFlags, QuietOpt, RetryOpt, model_options


@model_options
def generate(
    ctx: typer.Context,
    prompts: Annotated[Path, typer.Argument(help="JSONL file: one {'id', 'prompt'} or {'id', 'messages'} per line.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory; results go to OUT/output.jsonl.")],
    max_failure_share: MaxFailureShareOpt = None,
    retry_failed: RetryOpt = False,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """Run every prompt through the model, resumably, and write OUT/output.jsonl in input order."""
    cfg = flags.load({"pipeline.max_failure_share": max_failure_share})
    from condor.cli.runtime import describe_usage, report_failures, run_job
    from condor.llm.registry import backend_session
    from condor.llm.settings import sampling
    from condor.run.batch import generate_batch
    from condor.run.failures import FailureReport, StepFailures
    from condor.run.progress import ProgressBoard
    from condor.run.directory import RunDirectory
    from condor.run.store import refuse_symlink

    cache_path = Path(cfg.cache) if cfg.cache else output / "cache.sqlite"

    async def job():
        # The lock first: a second process on the same directory is refused before it loads a model.
        with RunDirectory(output, force=force).lock():
            if not cfg.cache:
                refuse_symlink(cache_path)
            async with backend_session(cfg.llm, cache_path) as llm:
                with ProgressBoard(quiet=quiet) as board:
                    return await generate_batch(prompts, output, llm, board=board, retry_failed=retry_failed,
                                                force=force, settings=sampling(cfg.llm))

    result = run_job(job)
    for note in result.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    parts = [f"{result.failed} failed"] if result.failed else []
    parts += [f"{result.invalid} invalid input lines"] if result.invalid else []
    summary = f"{result.outputs} outputs ({', '.join(parts) or 'no errors'}) -> {result.output_path}"
    if result.outcome.inputs:
        summary += f"; {describe_usage(result.outcome.as_dict())}"
    typer.echo(summary)
    if result.invalid:
        typer.echo("invalid input lines keep their reason in the 'error' field; fix them in the prompts file", err=True)
    valid = result.outputs - result.invalid
    step = StepFailures("generate", valid, result.failed, result.failure_messages)
    rejected = {"invalid input line": result.invalid} if result.invalid else {}
    report_failures(FailureReport([step], valid - result.failed, cfg.pipeline.max_failure_share, rejected), ctx)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
