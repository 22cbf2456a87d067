"""A pipeline is data: a list of plain step objects, each naming what it runs and what it reads.

Three kinds of step:

- :class:`ModelStep` runs a :class:`~condor.stages.base.Stage` (prompt building and parsing) with the
  backend of the stage's role; an executor does the calling.
- :class:`GateStep` runs model-free :class:`~condor.filters.base.Gate` checks (filters, selection) over every input record.
  A step with an ``ordered`` gate (state across records, such as near-duplicate removal) sees its
  records in id order and in fixed chunks, so it gives the same answer however the records arrived;
  the others see records as they come. It is cheap and is redone whole whenever its inputs or
  settings change.
- :class:`SourceStep` brings records in from outside the run (an existing dataset to refine).

A step reads the records of the step named by ``reads`` (``None``: the step before it in the list, so
inserting a step into the list rewires it), plus the records that the steps in ``carry_from`` could not
process. A step with ``carries=True`` (critique, refinement, judging) does not drop what it cannot
process: such a record goes on unchanged, with a note, so one failed round never costs a record its
earlier versions. Every other step's rejections leave the pipeline and are reported.

This module only describes steps; :mod:`condor.run.orchestrate` runs them, and
:mod:`condor.run.records` reads what they wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Iterator, Sequence

from condor.filters.base import Gate
from condor.run.sorting import sorted_records
from condor.stages.base import Record, Rejection, Stage

#: The pseudo-step that the first model step reads: the run's plan (``OUT/plan.jsonl``).
PLAN = "plan"
#: Records a gate step hands its gates at once.
GATE_CHUNK = 512


@dataclass(frozen=True)
class Step:
    """What every step has: a unique name and what it reads."""

    name: str
    reads: str | None = None
    carry_from: tuple[str, ...] = ()
    carries: bool = False

    @property
    def kind(self) -> str:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The step as the manifest records it, so that a reader can follow the graph without code."""
        return {"kind": self.kind, "reads": self.reads, "carry_from": list(self.carry_from), "carries": self.carries}


@dataclass(frozen=True)
class ModelStep(Step):
    """A stage run by an executor with the backend of ``stage.role``.

    ``checks`` are gates every output record must pass (degenerate text); a record that fails gets
    up to ``resamples`` fresh samples before it is rejected with the gate's reason.
    """

    stage: Stage | None = None
    checks: Sequence[Gate] = ()
    resamples: int = 0
    #: The settings that shape the step's results (model, sampling; :func:`condor.llm.settings.sampling`).
    #: Recorded in the manifest; when they change, the step is redone rather than kept under new labels.
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.stage is None:
            raise ValueError(f"model step {self.name!r} needs a stage")

    @property
    def kind(self) -> str:
        return "model"

    def describe(self) -> dict[str, Any]:
        assert self.stage is not None
        return {**super().describe(), "role": self.stage.role, "template_version": self.stage.version,
                "checks": [[gate.name, gate.settings] for gate in self.checks], "resamples": self.resamples,
                "settings": self.settings}


@dataclass(frozen=True)
class GateStep(Step):
    """Model-free gates applied in order to every input record; the first rejection wins."""

    gates: Sequence[Gate] = field(default_factory=tuple)

    @property
    def kind(self) -> str:
        return "gate"

    @property
    def settings(self) -> list[Any]:
        return [[gate.name, gate.settings] for gate in self.gates]

    @property
    def ordered(self) -> bool:
        """Whether a gate of the step needs records in id order (see :class:`Gate`)."""
        return any(gate.ordered or gate.chunked for gate in self.gates)

    @property
    def chunked(self) -> bool:
        """Whether a gate of the step needs the fixed chunks of :data:`GATE_CHUNK` records in id order."""
        return any(gate.chunked for gate in self.gates)

    @property
    def threaded(self) -> bool:
        """Whether a gate of the step wants its checks in a worker thread (see :class:`Gate`)."""
        return any(gate.threaded for gate in self.gates)

    def checker(self) -> Callable[[list[Record]], list[dict[str, Any]]]:
        """One execution of the gates (fresh state): call it with successive chunks of records; it
        returns one unit per record, in order, with the kept record or the first rejection."""
        gates = [gate.fresh() for gate in self.gates]

        def check(chunk: list[Record]) -> list[dict[str, Any]]:
            verdicts: list[Record | Rejection] = list(chunk)
            for gate in gates:
                alive = [i for i, v in enumerate(verdicts) if not isinstance(v, Rejection)]
                for i, verdict in zip(alive, gate.check_batch([verdicts[i] for i in alive]), strict=True):
                    verdicts[i] = verdict  # type: ignore[assignment]
            units = []
            for record, verdict in zip(chunk, verdicts):
                if isinstance(verdict, Rejection):
                    rejection = replace(verdict, stage=self.name).to_dict()
                    units.append({"input_id": record["id"], "records": [], "rejections": [rejection]})
                else:
                    units.append({"input_id": record["id"], "records": [verdict], "rejections": []})
            return units

        return check

    def units(self, records: Iterable[Record]) -> Iterator[dict[str, Any]]:
        """One unit per input record, in id order: the kept record or the rejection.

        Records go through in chunks of :data:`GATE_CHUNK`, so that a gate that embeds text can batch;
        chunks keep the id order, so a stateful gate (duplicates) sees records exactly as one by one.
        The sort spills to disk past a few thousand records (:mod:`condor.run.sorting`).
        """
        check = self.checker()
        chunk: list[Record] = []
        for record in sorted_records(records):
            chunk.append(record)
            if len(chunk) == GATE_CHUNK:
                yield from check(chunk)
                chunk = []
        if chunk:
            yield from check(chunk)


@dataclass(frozen=True)
class SourceStep(Step):
    """Records from outside the run: ``produce()`` yields units; ``fingerprint`` identifies the source."""

    produce: Callable[[], Iterable[dict[str, Any]]] | None = None
    fingerprint: str = ""

    @property
    def kind(self) -> str:
        return "source"


def resolve(steps: Sequence[Step]) -> list[Step]:
    """``steps`` with every ``reads=None`` filled in with the step before it; names must be unique.

    The first step must name what it reads (the plan, or a step of an earlier command in the same run
    directory), unless it is a source.
    """
    resolved: list[Step] = []
    seen: set[str] = set()
    for index, step in enumerate(steps):
        if step.name in seen:
            raise ValueError(f"two steps are named {step.name!r}; step names must be unique")
        if step.name == PLAN or not step.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"step name {step.name!r} must be letters, digits, '_' or '-', and not {PLAN!r}")
        seen.add(step.name)
        if step.reads is None and not isinstance(step, SourceStep):
            if index == 0:
                raise ValueError(f"the first step {step.name!r} must say which step it reads")
            step = replace(step, reads=steps[index - 1].name)
        resolved.append(step)
    return resolved


def insert_after(steps: Sequence[Step], name: str, new: Step) -> list[Step]:
    """A copy of ``steps`` with ``new`` right after the step called ``name``.

    The step that read ``name`` through the default (``reads=None``) now reads ``new`` instead; a step
    that names ``name`` explicitly keeps reading it.
    """
    names = [step.name for step in steps]
    if name not in names:
        raise ValueError(f"no step named {name!r}; steps: {', '.join(names)}")
    at = names.index(name) + 1
    return [*steps[:at], new, *steps[at:]]
