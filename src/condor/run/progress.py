"""Progress display for long steps: done/total, ETA, rates, retries, failures, and what is in flight.

Executors report counts to a :class:`StageProgress`; a rich live display redraws a few times a second
from those counters, so per-record cost is a handful of integer additions however fast records finish.
``quiet`` replaces the display with nothing (the CLI still prints a one-line summary at the end).

Each step is one line that fits the terminal (80 columns and up): the name, the bar and the counts
always show; the rest (failures, items in flight and the age of the oldest, retries, ETA, rates) is
added in order of importance while it fits, and the bar takes what is left. Items in flight and their
age are what tell a slow server from a stuck one: "2 in flight, oldest 3m05s" with nothing done.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import Progress, ProgressColumn, Task
from rich.table import Column
from rich.text import Text

#: Columns of the step name; longer names are cut.
NAME_WIDTH = 10
BAR_MIN, BAR_MAX = 8, 40


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
        # Items being worked on, with when each started, oldest first (dicts keep insertion order).
        self._in_flight: dict[Any, float] = {}

    def begin(self, item: Any) -> None:
        """``item`` (any hashable token) is being worked on from now."""
        self._in_flight[item] = time.monotonic()

    def end(self, item: Any) -> None:
        self._in_flight.pop(item, None)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def oldest_age(self) -> float | None:
        """Seconds the longest-running item in flight has been at it; None when nothing is."""
        for started in self._in_flight.values():
            return time.monotonic() - started
        return None

    def rates(self) -> tuple[float, float]:
        # A finished stage keeps the rate it ran at, rather than decaying while later stages run.
        end = self.finished if self.finished is not None else time.monotonic()
        elapsed = max(end - self.started, 1e-6)
        return self.requests / elapsed, self.tokens / elapsed


def duration(seconds: float) -> str:
    """``12s``, ``3m05s``, ``2h04m``: short enough for a progress line."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def stage_line(stage: StageProgress, width: int, time_remaining: float | None = None) -> Text:
    """One step's progress as a single line of at most ``width`` columns."""
    done = stage.resumed + stage.done
    count = f"{done}/{stage.total}" if stage.total is not None else str(done)
    rps, tps = stage.rates()
    age = stage.oldest_age()
    running = stage.finished is None
    # (priority, position, text, style): lower priority numbers are kept first, positions order the line.
    optional: list[tuple[int, int, str, str]] = []
    if stage.failures:
        optional.append((0, 6, f"failed {stage.failures}", "red"))
    if running and age is not None:
        optional.append((1, 5, f"{stage.in_flight} in flight, oldest {duration(age)}", "yellow" if age >= 60 else ""))
    if stage.retries:
        optional.append((2, 7, f"retries {stage.retries}", "dim"))
    if running and time_remaining is not None:
        optional.append((3, 2, f"eta {duration(time_remaining)}", "cyan"))
    elif not running:
        optional.append((3, 2, f"in {duration((stage.finished or 0) - stage.started)}", "dim"))
    optional.append((4, 3, f"{rps:.1f} req/s", "dim"))
    if stage.rejections:
        optional.append((5, 8, f"rejected {stage.rejections}", "dim"))
    optional.append((6, 4, f"{tps:.0f} tok/s", "dim"))
    if stage.resumed:
        optional.append((7, 9, f"resumed {stage.resumed}", "dim"))

    fixed = NAME_WIDTH + 1 + BAR_MIN + 1 + len(count)
    chosen: list[tuple[int, int, str, str]] = []
    used = fixed
    for item in sorted(optional):
        if used + 2 + len(item[2]) <= width:
            chosen.append(item)
            used += 2 + len(item[2])
    bar_width = max(BAR_MIN, min(BAR_MAX, BAR_MIN + width - used))

    line = Text(no_wrap=True, overflow="crop")
    line.append(f"{stage.name[:NAME_WIDTH]:<{NAME_WIDTH}} ", style="bold")
    filled = bar_width if not stage.total else min(bar_width, round(bar_width * done / stage.total))
    line.append("━" * filled, style="green" if not running else "magenta")
    line.append("━" * (bar_width - filled), style="grey23")
    line.append(f" {count}")
    for _, _, text, style in sorted(chosen, key=lambda item: item[1]):
        line.append("  ")
        line.append(text, style=style)
    return line


class _StageLineColumn(ProgressColumn):
    """The whole row as one column, laid out by :func:`stage_line` for the console's width."""

    def __init__(self, console: Console) -> None:
        super().__init__(table_column=Column(no_wrap=True, overflow="crop"))
        self.console = console

    def render(self, task: Task) -> Text:
        stage: StageProgress | None = task.fields.get("stage")
        if stage is None:
            return Text("")
        # One column short of the edge: some terminals wrap a line that fills the last column.
        return stage_line(stage, max(40, self.console.width - 1), task.time_remaining)


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
                _StageLineColumn(self.console),
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
