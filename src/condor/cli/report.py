"""``condor report RUN -o report.html``: one self-contained HTML page to look at a run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def report(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory made by condor run, void or refine.")],
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="The HTML file to write (default: RUN/report.html).")] = None,
    reference: Annotated[Optional[Path], typer.Option("--reference", help="Questions of another dataset to overlay on the question map (JSONL or one question per line).")] = None,
    embeddings: Annotated[bool, typer.Option("--embeddings/--no-embeddings", help="Measure question diversity and draw the map with all-MiniLM-L6-v2 (offline).")] = True,
    map_points: Annotated[int, typer.Option("--map-points", help="Questions drawn on the map (a sample; t-SNE time grows with it).", min=10)] = 2000,
) -> None:
    """Write an offline HTML report: summary numbers, plots, and a browser over every record."""
    from condor.api import build_report
    from condor.cli.options import fail
    from condor.cli.runtime import run_sync
    from condor.report.html import ReportError

    def job():
        try:
            return build_report(run_dir, output, reference=reference, embeddings=embeddings, map_points=map_points)
        except ReportError as exc:
            fail(str(exc))

    result = run_sync(job)
    for note in result.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    typer.echo(f"report: {result.path} ({result.records} records, {result.bytes / 1e6:.1f} MB, built in {result.seconds:.1f} s)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
