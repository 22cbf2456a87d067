"""``condor train sft|dpo``: TRL's SFTTrainer or DPOTrainer on Condor data, full or LoRA, resumable.

What a training run leaves in its output directory:

- the model (``model.safetensors``, ``config.json``) or, with LoRA, the adapter (``adapter_model.safetensors``),
  with the tokenizer and its chat template: a Hugging Face directory that the transformers backend, vLLM
  (``--model DIR``) or ``transformers`` itself load;
- ``condor-model.json``: the base model, method, settings, data and result (the transformers backend
  finds an adapter's base here);
- ``training_log.jsonl`` (loss per step) and ``loss.png``; ``data/`` when the data was a run directory;
- ``training.json``: ``running`` with the run's key while it trains, ``done`` with the summary after.

Resume: checkpoints go to ``checkpoints/`` every ``save_steps`` steps; a rerun of the same command
continues from the last one, and a finished run is not redone. The key binds the directory to its method,
data, base model and settings, so a rerun with any of them changed is refused instead of mixing two
runs. A ``.lock`` keeps two processes out of one directory. DPO with full fine-tuning uses a frozen copy
of the starting model as the reference; with LoRA the base without the adapter is the reference.
Leaves out: multi-GPU and DeepSpeed settings, evaluation during training, and pushing to a hub.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condor.llm.hf_models import INSTALL_HINT, MODEL_CARD, fingerprint, load_model, load_tokenizer, pick_device, resolve_source
from condor.run.lock import RunLock
from condor.run.store import atomic_write_text
from condor.train.curve import CURVE_FILE, draw_loss_curve
from condor.train.data import TrainDataError, load_training_data
from condor.train.settings import Method, TrainSettings

STATE_FILE = "training.json"
STATE_FORMAT = "condor-train v1"
CARD_FORMAT = "condor-model v1"
CHECKPOINTS = "checkpoints"
#: Settings that change how a run is watched or saved, not what it learns: free to change on resume.
UNBOUND = {"save_steps", "logging_steps", "device"}


class TrainError(ValueError):
    """Training cannot start or go on; the message says why and what to do."""


@dataclass
class TrainResult:
    """Where the model is and how training went."""

    out: Path
    method: str
    rows: int
    steps: int
    first_loss: float | None
    final_loss: float | None
    seconds: float
    kind: str
    skipped: dict[str, int] = field(default_factory=dict)
    resumed_from: int | None = None
    already_done: bool = False
    curve: Path | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "rows": self.rows, "steps": self.steps, "first_loss": self.first_loss,
                "final_loss": self.final_loss, "seconds": round(self.seconds, 2), "kind": self.kind,
                "skipped": self.skipped, "resumed_from": self.resumed_from, "notes": self.notes,
                "curve": self.curve.name if self.curve else None}

    @classmethod
    def from_state(cls, out: Path, state: dict[str, Any]) -> "TrainResult":
        s = state.get("result") or {}
        curve = out / s["curve"] if s.get("curve") else None
        return cls(out, s.get("method", "?"), s.get("rows", 0), s.get("steps", 0), s.get("first_loss"),
                   s.get("final_loss"), s.get("seconds", 0.0), s.get("kind", "?"), s.get("skipped") or {},
                   s.get("resumed_from"), True, curve, s.get("notes") or [])


def _read_state(out: Path) -> dict[str, Any] | None:
    path = out / STATE_FILE
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise TrainError(f"{path} is unreadable; delete {out} (or choose another --output) and train again") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise TrainError(f"{path} is not a condor training state ({STATE_FORMAT}); choose another --output")
    return state


def run_key(method: str, data_fingerprint: str, base_id: str, settings: TrainSettings) -> str:
    bound = settings.model_dump(exclude=UNBOUND)
    blob = json.dumps({"method": method, "data": data_fingerprint, "base": base_id, "settings": bound}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def _precision(settings: TrainSettings, device: str) -> dict[str, bool]:
    import torch

    choice = settings.precision
    if choice == "auto":
        choice = "bf16" if device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if choice in ("bf16", "fp16") and device != "cuda":
        raise TrainError(f"precision {choice} needs a GPU; use --precision fp32 (or auto) on CPU")
    return {"bf16": choice == "bf16", "fp16": choice == "fp16"}


def _trainer(method: Method, model: Any, tokenizer: Any, rows: list[dict], out: Path, settings: TrainSettings,
             device: str, precision: dict[str, bool], monitor: Any) -> Any:
    from datasets import Dataset
    from transformers import PrinterCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    common = dict(
        output_dir=str(out / CHECKPOINTS), learning_rate=settings.learning_rate, num_train_epochs=settings.epochs,
        max_steps=settings.max_steps or -1, per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation, warmup_steps=settings.warmup_ratio,
        logging_steps=settings.logging_steps, save_strategy="steps", save_steps=settings.save_steps,
        save_total_limit=1, seed=settings.seed, report_to="none", disable_tqdm=True, use_cpu=device == "cpu",
        max_length=settings.max_length, dataloader_num_workers=0, **precision,
    )
    peft_config = None
    if settings.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                                 target_modules="all-linear", task_type="CAUSAL_LM")
    dataset = Dataset.from_list(rows)
    if method == "sft":
        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=dataset, processing_class=tokenizer,
                             peft_config=peft_config, callbacks=[monitor])
    else:
        # Full fine-tuning needs a frozen reference: a copy of the starting weights (with LoRA, the base
        # without the adapter plays that part and no copy is made).
        reference = None if settings.lora else copy.deepcopy(model)
        trainer = DPOTrainer(model=model, ref_model=reference, args=DPOConfig(**common, beta=settings.beta),
                             train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config,
                             callbacks=[monitor])
    # The monitor shows progress and keeps the log; transformers' printer would repeat every entry on stdout.
    trainer.remove_callback(PrinterCallback)
    return trainer


def _imports() -> None:
    try:
        import datasets  # noqa: F401
        import peft  # noqa: F401
        import trl  # noqa: F401
    except ImportError as exc:
        raise TrainError(f"training needs {exc.name}; {INSTALL_HINT}") from None


def train_model(method: Method, data: str | Path, out: str | Path, settings: TrainSettings | None = None, *,
                quiet: bool = True) -> TrainResult:
    """Train on ``data`` (a run directory, an export or a JSONL file) into the directory ``out``; resumable."""
    settings = settings or TrainSettings()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TrainError(f"{out} is a file; --output names the directory the model is saved in")
    out.mkdir(parents=True, exist_ok=True)
    lock = RunLock(out / ".lock").acquire()
    try:
        return _train_locked(method, data, out, settings, quiet)
    finally:
        lock.release()


def _train_locked(method: Method, data: str | Path, out: Path, settings: TrainSettings, quiet: bool) -> TrainResult:
    state = _read_state(out)
    if state is not None and state.get("status") == "done":
        return TrainResult.from_state(out, state)
    try:
        training = load_training_data(data, method, out / "data")
        base = resolve_source(settings.base_model)
        key = run_key(method, training.fingerprint(), fingerprint(base), settings)
    except TrainDataError as exc:
        raise TrainError(str(exc)) from None
    _imports()
    device = pick_device(settings.device)
    precision = _precision(settings, device)
    from transformers.trainer_utils import get_last_checkpoint

    from condor.train.progress import TrainingMonitor, loss_points, read_log

    checkpoints = out / CHECKPOINTS
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume is not None and (state is None or state.get("key") != key):
        raise TrainError(f"{out} holds checkpoints of a training run with other data, base model or settings; "
                         "rerun that command to resume it, or choose another --output")
    tokenizer = load_tokenizer(base)
    if settings.chat_template:
        try:
            tokenizer.chat_template = Path(settings.chat_template).read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            raise TrainError(f"--chat-template {settings.chat_template}: cannot read ({exc})") from None
    if not getattr(tokenizer, "chat_template", None):
        raise TrainError(f"the tokenizer of {base.path} has no chat template; give one with --chat-template FILE")
    model = load_model(base, merge=True)
    if resume is None:
        (out / "training_log.jsonl").unlink(missing_ok=True)  # a fresh start: no lines of an earlier attempt
    atomic_write_text(out / STATE_FILE, json.dumps({"format": STATE_FORMAT, "status": "running", "key": key,
                                                    "method": method}, indent=2))
    monitor = TrainingMonitor(out, f"{method} train", quiet=quiet)
    started = time.monotonic()
    try:
        with warnings.catch_warnings():
            # Deprecation notices of the libraries' own defaults: nothing a user of this command can act on.
            warnings.simplefilter("ignore", FutureWarning)
            trainer = _trainer(method, model, tokenizer, training.rows, out, settings, device, precision, monitor)
            trainer.train(resume_from_checkpoint=resume)
    except (ValueError, RuntimeError) as exc:  # a length too short for the prompts, out of memory, ...
        raise TrainError(f"training failed: {str(exc).strip().splitlines()[0][:300]}") from None
    finally:
        monitor.close()
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    points = loss_points(read_log(out))
    kind = "lora" if settings.lora else "full"
    result = TrainResult(
        out, method, len(training.rows), trainer.state.global_step, points[0][1] if points else None,
        points[-1][1] if points else None, time.monotonic() - started, kind, dict(training.skipped),
        int(Path(resume).name.rsplit("-", 1)[-1]) if resume else None, notes=list(training.notes))
    result.curve = draw_loss_curve(points, out / CURVE_FILE, f"{method.upper()} ({kind}) on {result.rows} rows")
    card = {"format": CARD_FORMAT, "method": method, "kind": kind, "base": base.describe(),
            "base_path": str(base.path.resolve()), "data": training.source, "rows": len(training.rows),
            "settings": settings.model_dump(), "result": result.as_dict()}
    atomic_write_text(out / MODEL_CARD, json.dumps(card, indent=2))
    atomic_write_text(out / STATE_FILE, json.dumps({"format": STATE_FORMAT, "status": "done", "key": key,
                                                    "method": method, "result": result.as_dict()}, indent=2))
    shutil.rmtree(checkpoints, ignore_errors=True)  # optimizer states are twice the model; the model is saved
    return result


__all__ = ["TrainError", "TrainResult", "train_model"]
