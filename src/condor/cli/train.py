"""``condor train sft|dpo``: fine-tune a model on Condor data (TRL, full or LoRA), resumably.

Both commands take the same options, defined once here with their help from
:class:`~condor.train.settings.TrainSettings`; the work is :func:`condor.train.trainer.train_model`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from condor.train.settings import TrainSettings

train_app = typer.Typer(help="Fine-tune a model on Condor data: SFT on answers, DPO on preference pairs.",
                        no_args_is_help=True)


def _help(name: str, extra: str = "") -> str:
    return f"{TrainSettings.model_fields[name].description} {extra}".strip()


DataArg = Annotated[Path, typer.Argument(metavar="DATA", help="A run directory, an export directory (condor export --format ...) or a JSONL file.")]
OutOpt = Annotated[Path, typer.Option("--output", "-o", help="Directory to save the model or adapter in (rerun the same command to resume).")]
BaseOpt = Annotated[Optional[str], typer.Option("--base-model", help=_help("base_model"))]
LoraOpt = Annotated[bool, typer.Option("--lora/--full", help=_help("lora"))]
LoraROpt = Annotated[Optional[int], typer.Option("--lora-r", help=_help("lora_r"), min=1)]
LoraAlphaOpt = Annotated[Optional[int], typer.Option("--lora-alpha", help=_help("lora_alpha"), min=1)]
LrOpt = Annotated[Optional[float], typer.Option("--learning-rate", "--lr", help=_help("learning_rate"))]
EpochsOpt = Annotated[Optional[float], typer.Option("--epochs", help=_help("epochs"))]
MaxStepsOpt = Annotated[Optional[int], typer.Option("--max-steps", help=_help("max_steps"), min=1)]
BatchOpt = Annotated[Optional[int], typer.Option("--batch-size", help=_help("batch_size"), min=1)]
AccumOpt = Annotated[Optional[int], typer.Option("--gradient-accumulation", "--grad-accum", help=_help("gradient_accumulation"), min=1)]
LengthOpt = Annotated[Optional[int], typer.Option("--max-length", help=_help("max_length"), min=16)]
TemplateOpt = Annotated[Optional[Path], typer.Option("--chat-template", help=_help("chat_template"))]
PrecisionOpt = Annotated[Optional[str], typer.Option("--precision", help=_help("precision"))]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help=_help("seed"))]
SaveOpt = Annotated[Optional[int], typer.Option("--save-steps", help=_help("save_steps"), min=1)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help=_help("device"))]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; only errors and the final summary.")]


def settings_from(values: dict[str, Any]) -> TrainSettings:
    """Settings from the flags that were given (None: the default), or a one-line error."""
    from pydantic import ValidationError

    from condor.cli.options import fail

    given = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items() if v is not None}
    try:
        return TrainSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"--{'-'.join(str(p) for p in e['loc']).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        fail(problems)
        raise


def _run(method: str, data: Path, output: Path, settings: TrainSettings, quiet: bool) -> None:
    from condor.cli.options import fail
    from condor.cli.runtime import run_sync
    from condor.train.trainer import TrainError, train_model

    def job():
        try:
            return train_model(method, data, output, settings, quiet=quiet)  # type: ignore[arg-type]
        except TrainError as exc:
            fail(str(exc))

    result = run_sync(job)
    for note in result.notes:
        typer.secho(note, err=True, fg=typer.colors.YELLOW)
    if result.skipped:
        typer.secho("rows left out: " + ", ".join(f"{n} ({why})" for why, n in result.skipped.items()),
                    err=True, fg=typer.colors.YELLOW)
    if result.already_done:
        typer.echo(f"already trained: {output} (delete it, or choose another --output, to train again)")
    loss = ""
    if result.first_loss is not None and result.final_loss is not None:
        loss = f", loss {result.first_loss:.4f} -> {result.final_loss:.4f}"
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    what = "adapter" if result.kind == "lora" else "model"
    typer.echo(f"{method.upper()} ({result.kind}): {result.rows} rows, {result.steps} steps{loss}{resumed}")
    typer.echo(f"{what}: {output}")
    if result.curve is not None:
        typer.echo(f"loss curve: {result.curve}")


@train_app.command("sft")
def sft(
    data: DataArg, output: OutOpt, base_model: BaseOpt = None, lora: LoraOpt = False, lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None, learning_rate: LrOpt = None, epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None, batch_size: BatchOpt = None, gradient_accumulation: AccumOpt = None,
    max_length: LengthOpt = None, chat_template: TemplateOpt = None, precision: PrecisionOpt = None,
    seed: SeedOpt = None, save_steps: SaveOpt = None, device: DeviceOpt = None, quiet: QuietOpt = False,
) -> None:
    """Supervised fine-tuning on the answers (TRL SFTTrainer; loss on the answer only)."""
    values = dict(locals())
    for name in ("data", "output", "quiet"):
        values.pop(name)
    _run("sft", data, output, settings_from(values), quiet)


@train_app.command("dpo")
def dpo(
    data: DataArg, output: OutOpt, base_model: BaseOpt = None, lora: LoraOpt = False, lora_r: LoraROpt = None,
    lora_alpha: LoraAlphaOpt = None, learning_rate: LrOpt = None, epochs: EpochsOpt = None,
    max_steps: MaxStepsOpt = None, batch_size: BatchOpt = None, gradient_accumulation: AccumOpt = None,
    max_length: LengthOpt = None, chat_template: TemplateOpt = None, precision: PrecisionOpt = None,
    seed: SeedOpt = None, save_steps: SaveOpt = None, device: DeviceOpt = None,
    beta: Annotated[Optional[float], typer.Option("--beta", help=_help("beta"))] = None, quiet: QuietOpt = False,
) -> None:
    """Preference tuning on pairs (TRL DPOTrainer): the refined answer chosen over the original."""
    values = dict(locals())
    for name in ("data", "output", "quiet"):
        values.pop(name)
    _run("dpo", data, output, settings_from(values), quiet)


def register(app: typer.Typer) -> None:
    app.add_typer(train_app, name="train")
