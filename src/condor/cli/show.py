"""``condor show RUN``: a few kept rows of a run, in the terminal, for a first look at the data.

What a person checks before trusting a dataset: the tag each question came from, its task and difficulty,
the question, the answer that was kept (and whether a refinement replaced the original), and why the
rest left. Long texts are clipped; control characters a model may write are shown escaped, so model
text cannot move the cursor or recolour the terminal. The whole dataset is in the run's files
(``condor export``) and in the HTML report (``condor report``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

#: Characters of a question or answer shown before it is clipped.
CLIP = 400


def _clean(text: str, limit: int = CLIP) -> str:
    text = " ".join(str(text).split())
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def show(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN", help="A run directory made by condor run, void or refine.")],
    rows: Annotated[int, typer.Option("--rows", "-n", help="How many kept rows to show.", min=0)] = 5,
) -> None:
    """Show a few kept rows of a run and its rejections by reason; no model is needed."""
    from condor.cli.runtime import run_sync
    from condor.run.records import read_run

    def gather():
        reader = read_run(run_dir)
        kept = reader.final_records()
        reasons = Counter(r["reason"] for r in reader.rejections())
        return kept, reasons

    kept, reasons = run_sync(gather)
    typer.echo(f"{run_dir}: {len(kept)} kept rows; {sum(reasons.values())} rejected")
    for record in kept[:rows]:
        chosen = (record.get("chosen") or {}).get("version", 0)
        versions = record.get("versions") or []
        answer = record.get("answer") or (versions[chosen]["answer"] if versions else "")
        where = " > ".join(record.get("tag_path") or [])
        typer.echo("")
        typer.secho(f"[{record.get('task')}, {record.get('difficulty')}, {record.get('language')}] {_clean(where, 120)}",
                    bold=True)
        typer.echo(f"  Q: {_clean(record.get('question') or '')}")
        label = f"A (version {chosen} of {len(versions)})" if len(versions) > 1 else "A"
        typer.echo(f"  {label}: {_clean(answer)}")
    if reasons:
        typer.echo("")
        typer.echo("rejected by reason: " + ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()))


def register(app: typer.Typer) -> None:
    app.command("show")(show)
