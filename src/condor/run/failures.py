"""What a run lost to failed model calls, and whether that is too much for the run to count as done.

A run that finishes with every call failed has still "finished": each input has its unit, the steps
are marked complete, and a rerun makes no call. What tells success from failure is here: the share of
each model step's items whose calls failed, against ``pipeline.max_failure_share``, and whether any
row came through at all. The counts and the commonest errors come from the manifest (written when
each step finished), so a rerun that makes no call reports exactly what the first run reported.

Left out: deciding what to do about it. The CLI prints :meth:`FailureReport.problems` with the command
that sends the failed items again and sets the exit code; the Python API hands the report back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from condor.run.records import RunReader

#: Default of ``pipeline.max_failure_share``: above one item in ten, something is wrong with the server
#: or the settings, not with a few unlucky requests.
DEFAULT_MAX_SHARE = 0.1


@dataclass(frozen=True)
class StepFailures:
    """Failed items of one model step, with the commonest error messages and how often each came."""

    step: str
    items: int
    failed: int
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.failed / self.items if self.items else 0.0

    def why(self) -> str:
        """The commonest error, and how many other kinds there were."""
        if not self.errors:
            return "no error message was recorded"
        (first, count), *rest = self.errors.items()
        more = f"; and {len(rest)} other error{'s' if len(rest) > 1 else ''}" if rest else ""
        return f"{first} ({count}x){more}"


@dataclass
class FailureReport:
    """The failures of a finished run and the verdict: ``ok`` unless nothing or too little came through."""

    steps: list[StepFailures]
    #: Rows of the dataset; None where the dataset is made elsewhere (a shard's, by `condor merge`).
    rows: int | None
    max_share: float = DEFAULT_MAX_SHARE
    #: What the empty dataset lost its items to, when it is empty: ``{reason: count}``.
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return sum(step.failed for step in self.steps)

    @property
    def over(self) -> list[StepFailures]:
        """Steps whose share of failed items is above ``max_share``."""
        return [step for step in self.steps if step.failed and step.share > self.max_share]

    @property
    def ok(self) -> bool:
        return self.rows != 0 and not self.over

    def problems(self) -> list[str]:
        """One line per reason the run is not a success (none when :attr:`ok`)."""
        lines = [
            f"{step.step}: {step.failed} of {step.items} items failed ({step.share:.0%}; at most "
            f"{self.max_share:.0%} may, pipeline.max_failure_share): {step.why()}"
            for step in self.over
        ]
        if self.rows == 0:
            if self.failed and not lines:
                lines.append(f"no rows came through; {self.failed} items failed: {self.steps[0].why()}")
            elif not self.failed:
                reasons = ", ".join(f"{reason} {n}" for reason, n in list(self.rejected.items())[:5])
                lines.append("no rows came through: every item was rejected" + (f" ({reasons})" if reasons else ""))
            else:
                lines.append("no rows came through")
        return lines

    def notices(self) -> list[str]:
        """Failures worth a line even when the run is :attr:`ok` (a few items lost out of many)."""
        return [f"{step.step}: {step.failed} of {step.items} items failed: {step.why()}"
                for step in self.steps if step.failed and step not in self.over]


def step_failures(name: str, entry: dict[str, Any]) -> StepFailures:
    """A step's failures from its manifest entry (``units``, ``failures``, ``errors``)."""
    return StepFailures(name, int(entry.get("units") or 0), int(entry.get("failures") or 0),
                        dict(entry.get("errors") or {}))


def failure_report(reader: RunReader, rows: int | None, max_share: float = DEFAULT_MAX_SHARE,
                   rejected: dict[str, int] | None = None) -> FailureReport:
    """The failures of every model step that leads to the run's final step."""
    final = reader.final_step
    steps = []
    for name in reader.ancestors(final) if final else ():
        if reader.steps[name].get("kind") == "model":
            steps.append(step_failures(name, reader.manifest.get("stages", {}).get(name, {})))
    return FailureReport(steps, rows, max_share, rejected or {})
