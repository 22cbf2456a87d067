"""What a training run shows and keeps while it runs: a progress line (steps, loss, ETA) and the log file.

:class:`TrainingMonitor` is a ``transformers`` callback. Every logged step is appended at once to
``training_log.jsonl`` in the output directory (so ``tail -f`` shows a long run, and a killed run keeps
what it logged), and the rich progress bar shows the step, the latest loss and the time left. After a
resume the bar starts at the checkpoint's step and the ETA counts only the steps run now. ``quiet``
keeps the log file and drops the bar. Leaves out evaluation metrics during training.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from transformers import TrainerCallback

LOG_FILE = "training_log.jsonl"
#: Fields of a transformers log entry kept in the log file (the rest is per-trainer noise).
KEPT = ("loss", "learning_rate", "grad_norm", "epoch", "rewards/accuracies", "rewards/margins", "train_loss",
        "train_runtime")


class TrainingMonitor(TrainerCallback):
    """Appends each log entry to the log file and drives the progress bar."""

    def __init__(self, out: Path, label: str, quiet: bool = False, console: Console | None = None) -> None:
        self.log_path = out / LOG_FILE
        self.label = label
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: Any = None
        self.started_step = 0
        self.started = time.monotonic()
        self.last_loss: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started_step = state.global_step
        self.started = time.monotonic()
        if self.quiet:
            return
        self._progress = Progress(
            TextColumn(f"[bold]{self.label:<12}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=self.console, refresh_per_second=2)
        self._progress.start()
        # The bar's own rate (and so its ETA) counts the steps of this process only, not the resumed ones.
        self._task = self._progress.add_task(self.label, total=state.max_steps, completed=0, loss="loss -")
        self._progress.update(self._task, total=state.max_steps - state.global_step)
        if state.global_step:
            self.console.print(f"resumed from step {state.global_step} of {state.max_steps}")

    def on_step_end(self, args, state, control, **kwargs):
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step - self.started_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        entry: dict[str, Any] = {"step": state.global_step, "time": round(time.time(), 3)}
        entry.update({k: _number(v) for k, v in logs.items() if k in KEPT})
        if "loss" in entry:
            self.last_loss = entry["loss"]
            if self._progress is not None:
                self._progress.update(self._task, loss=f"loss {entry['loss']:.4f}")
        with self.log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def on_train_end(self, args, state, control, **kwargs):
        self.close()

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _number(value: Any) -> Any:
    try:
        return round(float(value), 6)
    except (TypeError, ValueError):
        return value


def read_log(out: Path) -> list[dict[str, Any]]:
    """The log entries of a training run, in order; a torn last line (a kill mid-write) is skipped."""
    path = out / LOG_FILE
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def loss_points(entries: list[dict[str, Any]]) -> list[tuple[int, float]]:
    """``(step, loss)`` per logged step; after a resume a re-logged step keeps its latest value."""
    points: dict[int, float] = {}
    for entry in entries:
        if isinstance(entry.get("loss"), (int, float)) and isinstance(entry.get("step"), int):
            points[entry["step"]] = float(entry["loss"])
    return sorted(points.items())
