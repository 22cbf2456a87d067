"""What a gate is: a pure, model-free check of one record, with the reason when it fails.

Gates never call a model or touch a file; what they need (limits, a benchmark's n-grams, an embedding
model) is handed to them when they are built. A :class:`~condor.run.steps.GateStep` applies a list of
them to every record of a step.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from condor.stages.base import Record, Rejection

__all__ = ["Gate", "Record", "Rejection"]


class Gate(ABC):
    """A model-free check of one record: the record (possibly annotated) when it passes, else a Rejection.

    A gate may keep state across the records of one execution (a duplicate index): :meth:`fresh`
    returns a copy with empty state, and the step calls it once per execution. ``settings`` is anything
    JSON-able that changes the gate's verdicts; a change of it redoes the step.
    """

    name: str = "gate"
    #: The verdict on a record depends on other records (a duplicate index), not on the record alone.
    #: A sharded run leaves such gates to ``condor merge``, which applies them over every shard.
    across_records: bool = False

    @property
    def settings(self) -> Any:
        return None

    def fresh(self) -> "Gate":
        return self

    @abstractmethod
    def check(self, record: Record) -> Record | Rejection:
        """The record to keep, or a :class:`Rejection` with its reason."""

    def check_batch(self, records: list[Record]) -> list[Record | Rejection]:
        """:meth:`check` for several records at once, in order; gates that embed text batch here."""
        return [self.check(record) for record in records]
