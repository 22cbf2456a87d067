"""``condor export``: a finished run's dataset files, in the default layout or any trainer's format.

Without ``--format`` it writes ``sft.jsonl``, ``preference.jsonl`` and ``rejected.jsonl`` again
(into RUN, or ``-o DIR``), exactly as the run did. With ``--format`` it writes that format, filtered
and optionally split, with a dataset card, into ``-o DIR`` (default ``RUN/exports/FORMAT``). No model
is needed either way.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

FORMAT_HELP = ("messages, sharegpt, alpaca, parquet, hf (a datasets DatasetDict saved to disk), dpo (pairs the "
               "judge preferred in both orders) or critique (critic-model training records). Default: the run's own "
               "sft/preference/rejected files.")


def export(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory made by condor run, void or refine.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where to write the files (default: RUN, or RUN/exports/FORMAT with --format).")] = None,
    format: Annotated[Optional[str], typer.Option("--format", "-f", help=FORMAT_HELP)] = None,
    lang: Annotated[Optional[str], typer.Option("--lang", help="Keep only these languages (comma-separated).")] = None,
    task: Annotated[Optional[str], typer.Option("--task", help="Keep only these task types (comma-separated).")] = None,
    difficulty: Annotated[Optional[str], typer.Option("--difficulty", help="Keep only these difficulties: easy, medium, hard (comma-separated).")] = None,
    domain: Annotated[Optional[str], typer.Option("--domain", help="Keep only these domains (comma-separated).")] = None,
    min_score: Annotated[Optional[float], typer.Option("--min-score", help="Keep only rows whose final answer has a judge grade of at least this (1-10).", min=1, max=10)] = None,
    min_margin: Annotated[Optional[float], typer.Option("--min-margin", help="dpo: the chosen answer's grade must beat the rejected one's by at least this.", min=0)] = None,
    test_size: Annotated[Optional[float], typer.Option("--test-size", help="Share of rows for a test split, made by leaf (no leaf in both), such as 0.1.", min=0, max=1)] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the train/test split.")] = 0,
    push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", metavar="REPO", help="Upload the hf export to this Hugging Face dataset repository.")] = None,
    card: Annotated[bool, typer.Option("--card/--no-card", help="Write the dataset card (README.md) beside the data.")] = True,
) -> None:
    """Write a finished run's dataset files again, or in a trainer's format (--format); no model is needed."""
    from condor.cli.options import fail
    from condor.cli.runtime import run_sync

    if format is None:
        extras = {"--lang": lang, "--task": task, "--difficulty": difficulty, "--domain": domain, "--min-score": min_score,
                  "--min-margin": min_margin, "--test-size": test_size, "--push-to-hub": push_to_hub}
        given = [name for name, value in extras.items() if value is not None]
        if given:
            fail(f"{', '.join(given)} apply to an export in a chosen format; add --format (such as --format messages)")
        _default_export(run_dir, output)
        return

    from condor.api import export_dataset
    from condor.export.build import ExportError

    command = shlex.join(["condor", *sys.argv[1:]]) if sys.argv and "condor" in Path(sys.argv[0]).name else None

    def job():
        try:
            return export_dataset(run_dir, format, output, language=lang, task=task, difficulty=difficulty, domain=domain,
                                  min_score=min_score, min_margin=min_margin, test_size=test_size or None, seed=seed,
                                  card=card, push_to_hub=push_to_hub, command=command)
        except ExportError as exc:
            fail(str(exc))

    result = run_sync(job)
    for name, path in result.files.items():
        typer.echo(f"{name}: {path} ({result.rows[name]} rows)")
    if result.card is not None:
        typer.echo(f"card: {result.card}")
    if result.dropped:
        typer.echo("left out by filters: " + ", ".join(f"{n} ({why})" for why, n in result.dropped.items()))
    if result.skipped:
        typer.echo("no row made: " + ", ".join(f"{n} ({why})" for why, n in result.skipped.items()))
    for note in result.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    if result.pushed:
        typer.echo(f"pushed to the Hugging Face Hub: {result.pushed}")


def _default_export(run_dir: Path, output: Path | None) -> None:
    from condor.api import export_run
    from condor.cli.runtime import run_sync

    summary = run_sync(lambda: export_run(run_dir, output))
    typer.echo(f"dataset: {summary.paths['sft']} ({summary.sft} rows)")
    if "preference" in summary.paths:
        typer.echo(f"preference pairs: {summary.paths['preference']} ({summary.preference} rows)")
    typer.echo(f"rejected: {summary.paths['rejected']} ({summary.rejected} rows)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
