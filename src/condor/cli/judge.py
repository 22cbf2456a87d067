"""``condor judge``: grade a run (``--in RUN``) or compare two datasets (``--a X --b Y -o OUT``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from condor.cli.options import ModelFlags, QuietOpt, RetryOpt, model_options

SIDE_HELP = "A run directory or a JSONL dataset (messages or question/answer rows); RUN@original, RUN@final or RUN@K picks a run's answer version."


@model_options
def judge(
    input_run: Annotated[Optional[Path], typer.Option("--in", metavar="RUN", help="Grade this run's answers (every version, 1-10) and compare each refined answer with its original.")] = None,
    a: Annotated[Optional[str], typer.Option("--a", metavar="RUN_OR_FILE", help=f"The baseline side of a comparison. {SIDE_HELP}")] = None,
    b: Annotated[Optional[str], typer.Option("--b", metavar="RUN_OR_FILE", help="The side compared against --a (wins are counted for it).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Judge run directory for --a/--b (resumable).")] = None,
    grade: Annotated[bool, typer.Option("--grade/--no-grade", help="--in: grade every answer version.")] = True,
    pairwise: Annotated[bool, typer.Option("--pairwise/--no-pairwise", help="--in: compare final with original answers, in both orders.")] = True,
    retry_failed: RetryOpt = False,
    quiet: QuietOpt = False,
    flags: ModelFlags = ModelFlags(),
) -> None:
    """LLM-as-judge: 1-10 grades, and pairwise verdicts asked in both orders, with 95% intervals."""
    from condor.api import ajudge_runs
    from condor.cli.options import fail
    from condor.cli.runtime import run_job
    from condor.judge.sources import JudgeInputError

    cfg = flags.load()

    async def job():
        try:
            return await ajudge_runs(cfg, run=input_run, a=a, b=b, out=output, grade=grade, pairwise=pairwise,
                                     retry_failed=retry_failed, quiet=quiet)
        except JudgeInputError as exc:
            fail(str(exc))

    result = run_job(job)
    for note in result.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    if result.grades is not None and result.grades.original is not None:
        g = result.grades
        final = f", final {g.final.value:.2f}" if g.final is not None else ""
        gain = f", gain {g.gain.value:+.2f} [{g.gain.low:+.2f}, {g.gain.high:+.2f}]" if g.gain is not None else ""
        typer.echo(f"grades: {g.records} records, original {g.original.value:.2f}{final}{gain}")
    if result.pairwise is not None:
        p = result.pairwise
        typer.echo(f"pairwise ({p.pairs} pairs, b against a, both orders): wins {p.b_win_rate.percent()}, "
                   f"ties {p.tie_rate.percent()}, losses {p.a_win_rate.percent()}")
        lc = f", length-controlled win rate {p.length_controlled_win_rate.percent()}" if p.length_controlled_win_rate else ""
        typer.echo(f"position consistency {p.position_consistency.percent()}, mean length difference "
                   f"{p.mean_length_difference:+.0f} characters{lc}")
    unjudged = sum(result.summary.get("unjudged", {}).values())
    if unjudged:
        typer.secho(f"{unjudged} items could not be judged (see the steps' rejections); --retry-failed sends failures again",
                    err=True, fg=typer.colors.YELLOW)
    typer.echo(f"summary: {result.path}")


def register(app: typer.Typer) -> None:
    app.command("judge")(judge)
