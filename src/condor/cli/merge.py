"""``condor merge``: join the run directories of a sharded run into one (see :mod:`condor.run.merge`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def merge(
    shards: Annotated[list[Path], typer.Argument(help="The run directory of every shard (made with --shard i/N).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The merged run directory (must not exist yet).")],
) -> None:
    """Join the shards of a run made with --shard i/N into one run directory: checked, no gaps, no duplicates."""
    from condor.api import merge_runs
    from condor.cli.runtime import run_sync

    result = run_sync(lambda: merge_runs(shards, output))
    typer.echo(f"merged {result.shards} shards ({result.work_items} work items) into {result.out}")
    for step, dropped in result.dropped.items():
        typer.echo(f"  {step}: {dropped} near-duplicates across shards removed, as one run would have")
    if result.failures:
        typer.echo(f"  {result.failures} items failed in their shard; `condor run -o {result.out} --retry-failed` "
                   "with the same settings sends them again", err=True)
    typer.echo(f"dataset: {result.out / 'sft.jsonl'} ({result.sft} rows); rejected: {result.rejected} rows")


def register(app: typer.Typer) -> None:
    app.command("merge")(merge)
