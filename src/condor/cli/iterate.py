"""``condor iterate``: self-iteration, one command; the loop is :func:`condor.train.iterate.aiterate`.

Settings come from ``--settings FILE`` (YAML of :class:`~condor.train.settings.IterateSettings`), then
the flags; what each iteration generates comes from ``--config`` (the run configuration: plan sizes,
rounds, the judge role) and the plan flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from condor.cli.options import ConfigOpt, LeavesOpt, QuietOpt, RoundsOpt, TasksOpt
from condor.train.settings import IterateSettings, TrainSettings


def _help(name: str) -> str:
    return IterateSettings.model_fields[name].description or ""


def _train_help(name: str) -> str:
    return TrainSettings.model_fields[name].description or ""


def _settings(path: Path | None, flags: dict[str, Any], train: dict[str, Any], generator: dict[str, Any]) -> IterateSettings:
    from pydantic import ValidationError

    from condor.cli.options import fail
    from condor.config_files import read_yaml
    from condor.errors import ConfigError

    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = read_yaml(path, "iterate settings") or {}
        except ConfigError as exc:
            fail(str(exc))
        if not isinstance(loaded, dict):
            fail(f"{path}: the top level must be a mapping of iterate settings")
        data = loaded
    data.update({k: v for k, v in flags.items() if v is not None})
    for section, values in (("train", train), ("generator", generator)):
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            current = data.get(section) if isinstance(data.get(section), dict) else {}
            data[section] = {**current, **given}
    try:
        return IterateSettings.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path else "flags"
        fail(f"{where}: " + "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()))
        raise


def iterate(
    output: Annotated[Path, typer.Option("--output", "-o", help="Iterate directory (rerun the same command to resume; raise --iterations to go on).")],
    iterations: Annotated[Optional[int], typer.Option("--iterations", "-n", help=_help("iterations"), min=1)] = None,
    settings_file: Annotated[Optional[Path], typer.Option("--settings", help="YAML file of iterate settings (iterations, method, train, generator, gate, ...).")] = None,
    config: ConfigOpt = None,
    method: Annotated[Optional[str], typer.Option("--method", help=_help("method"))] = None,
    base_model: Annotated[Optional[str], typer.Option("--base-model", help=_help("base_model"))] = None,
    gate: Annotated[Optional[str], typer.Option("--gate", help=_help("gate"))] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help=_help("threshold"))] = None,
    eval_share: Annotated[Optional[float], typer.Option("--eval-share", help=_help("eval_share"))] = None,
    eval_questions: Annotated[Optional[int], typer.Option("--eval-questions", help=_help("eval_questions"), min=1)] = None,
    lora: Annotated[Optional[bool], typer.Option("--lora/--full", help=_train_help("lora"))] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr", help=_train_help("learning_rate"))] = None,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help=_train_help("epochs"))] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", help=_train_help("max_steps"), min=1)] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help=_train_help("batch_size"), min=1)] = None,
    max_length: Annotated[Optional[int], typer.Option("--max-length", help=_train_help("max_length"), min=16)] = None,
    max_tokens: Annotated[Optional[int], typer.Option("--max-tokens", help="Maximum tokens per completion of the policy (data and held-out answers).", min=1)] = None,
    leaves: LeavesOpt = None,
    tasks: TasksOpt = None,
    rounds: RoundsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Self-iteration: the best model writes data, a new one is trained on it, and promoted only if it wins."""
    from condor.cli.options import fail, resolve_config
    from condor.cli.runtime import run_job
    from condor.train.ledger import COLUMNS, IterateError, table_rows
    from condor.train.trainer import TrainError

    settings = _settings(
        settings_file,
        {"iterations": iterations, "method": method, "base_model": base_model, "gate": gate, "threshold": threshold,
         "eval_share": eval_share, "eval_questions": eval_questions},
        {"lora": lora, "learning_rate": learning_rate, "epochs": epochs, "max_steps": max_steps,
         "batch_size": batch_size, "max_length": max_length},
        {"max_tokens": max_tokens},
    )
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    cfg = resolve_config(config, {"pipeline.leaves": leaves, "pipeline.tasks": task_list, "pipeline.rounds": rounds})

    def say(message: str) -> None:
        typer.secho(message, err=True, fg=typer.colors.CYAN)

    async def job():
        from condor.train.iterate import aiterate

        try:
            return await aiterate(output, settings, cfg, quiet=quiet, say=say)
        except (IterateError, TrainError) as exc:
            fail(str(exc))

    result = run_job(job)
    for note in result.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    _print_table(COLUMNS, table_rows(result.ledger.rows))
    typer.echo(f"best model: {result.ledger.best} ({result.best_model or 'the embedded SmolLM2-135M GGUF'})")
    typer.echo(f"table: {output / 'iterations.md'}")


def _print_table(columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title="condor iterate")
    for cells in rows:
        table.add_row(*cells)
    Console(width=160).print(table)


def register(app: typer.Typer) -> None:
    app.command("iterate")(iterate)
