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

    Two flags say what a verdict may depend on besides the record, so that it never depends on the
    order in which a server's replies come back. ``ordered``: the records checked before it (state,
    such as a duplicate index); the gate is then handed records in id order. ``chunked``: the batch
    it came in (embeddings computed together); the gate is then handed records in id order and in
    the same fixed chunks every time. Both are the safe default; a gate that looks at each record
    alone sets both False and sees records as they come, which lets a streaming executor pass them on
    at once.
    """

    name: str = "gate"
    ordered: bool = True
    chunked: bool = True
    #: The verdict on a record depends on other records (a duplicate index), not on the record alone.
    #: A sharded run leaves such gates to ``condor merge``, which applies them over every shard. None
    #: (the default) means "as ``ordered`` says": a gate that keeps state is left to the merge unless
    #: it says otherwise.
    across_records: bool | None = None
    #: Checks may take long in code that lets other threads run (an embedding model): a streaming run
    #: calls them in a worker thread so that requests go on meanwhile. Quick pure-Python gates say
    #: False and are called on the event loop in small slices instead, since a thread busy in Python
    #: makes every request wait for the interpreter lock. True is the safe default for a gate that
    #: does not say.
    threaded: bool = True

    @property
    def decides_across_records(self) -> bool:
        return self.ordered if self.across_records is None else self.across_records

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
