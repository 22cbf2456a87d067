"""``condor generate``: batch inference with cache and resume, the engine's own command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from condor.cli.options import ModelFlags, QuietOpt, RetryOpt, model_options


@model_options
def generate(
    prompts: Annotated[Path, typer.Argument(help="JSONL file: one {'id', 'prompt'} or {'id', 'messages'} per line.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Run directory; results go to OUT/output.jsonl.")],
    retry_failed: RetryOpt = False,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """Run every prompt through the model, resumably, and write OUT/output.jsonl in input order."""
    cfg = flags.load()
    from condor.cli.runtime import describe_usage, run_job
    from condor.llm.registry import backend_session
    from condor.run.batch import generate_batch
    from condor.run.progress import ProgressBoard
    from condor.run.store import RunDirectory

    cache_path = Path(cfg.cache) if cfg.cache else output / "cache.sqlite"

    async def job():
        # The lock first: a second process on the same directory is refused before it loads a model.
        with RunDirectory(output).lock():
            async with backend_session(cfg.llm, cache_path) as llm:
                with ProgressBoard(quiet=quiet) as board:
                    return await generate_batch(prompts, output, llm, board=board, retry_failed=retry_failed)

    result = run_job(job)
    summary = f"{result.outputs} outputs ({result.errors} with errors) -> {result.output_path}"
    if result.outcome.inputs:
        summary += f"; {describe_usage(result.outcome.as_dict())}"
    typer.echo(summary)
    if result.errors:
        typer.echo("items with errors keep their reason in the 'error' field; --retry-failed sends them again", err=True)


def register(app: typer.Typer) -> None:
    app.command("generate")(generate)
