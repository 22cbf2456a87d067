"""Progress display for long steps: done/total, requests/s, tokens/s, ETA, retries, failures.

Executors report counts to a :class:`StageProgress`; a rich live display redraws a few times a second
from those counters, so per-record cost is a handful of integer additions however fast records finish.
``quiet`` replaces the display with nothing (the CLI still prints a one-line summary at the end).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn, TimeRemainingColumn
from rich.text import Text


class StageProgress:
    """Counters for one stage. Cheap to update from the event loop."""

    def __init__(self, name: str, total: int | None, resumed: int = 0) -> None:
        self.name = name
        self.total = total
        self.resumed = resumed
        self.done = 0
        self.requests = 0
        self.tokens = 0
        self.retries = 0
        self.failures = 0
        self.rejections = 0
        self.started = time.monotonic()
        self.finished: float | None = None

    def rates(self) -> tuple[float, float]:
        # A finished stage keeps the rate it ran at, rather than decaying while later stages run.
        end = self.finished if self.finished is not None else time.monotonic()
        elapsed = max(end - self.started, 1e-6)
        return self.requests / elapsed, self.tokens / elapsed


class _StatsColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        stage: StageProgress | None = task.fields.get("stage")
        if stage is None:
            return Text("")
        rps, tps = stage.rates()
        parts = [f"{rps:6.1f} req/s", f"{tps:7.0f} tok/s", f"retries {stage.retries}", f"failed {stage.failures}"]
        if stage.rejections:
            parts.append(f"rejected {stage.rejections}")
        if stage.resumed:
            parts.append(f"resumed {stage.resumed}")
        return Text("  ".join(parts), style="dim")


class ProgressBoard:
    """All stage bars of one command. Use :meth:`track` around a stage."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._tracked: dict[int, StageProgress] = {}

    def __enter__(self) -> "ProgressBoard":
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description:<12}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                _StatsColumn(),
                console=self.console,
                refresh_per_second=4,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextmanager
    def track(self, stage: StageProgress) -> Iterator[StageProgress]:
        """Show a bar for ``stage`` while the block runs; call :meth:`refresh` to redraw counts."""
        if self._progress is None:
            try:
                yield stage
            finally:
                stage.finished = time.monotonic()
            return
        task_id = self._progress.add_task(stage.name, total=stage.total, stage=stage, completed=stage.resumed)
        self._tracked[task_id] = stage
        try:
            yield stage
        finally:
            stage.finished = time.monotonic()
            self.refresh()
            del self._tracked[task_id]

    async def redraw(self, every: float = 0.25) -> None:
        """Refresh the bars every ``every`` seconds until cancelled (an executor runs it as a task)."""
        while True:
            await asyncio.sleep(every)
            self.refresh()

    def refresh(self) -> None:
        """Copy the counters into the bars (called a few times a second by the executor's ticker)."""
        if self._progress is None:
            return
        for task_id, stage in self._tracked.items():
            self._progress.update(task_id, completed=stage.resumed + stage.done, total=stage.total)
