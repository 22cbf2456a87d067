"""The executor interface: how a model step's records get to a model and back into the run directory.

An executor owns everything a stage does not: backends, the request cache, concurrency, retries, the
recovery ladder (:mod:`condor.run.recovery`), progress, and writing one unit per input to the step's
shard, skipping inputs already done. The local asyncio executor is :mod:`condor.run.local`; another
one (Ray) implements the same method over the same steps, and the orchestrator
(:mod:`condor.run.orchestrate`) does not know which it drives.

The orchestrator hands an executor the unfinished steps of a pipeline together, as a chain
(:meth:`Executor.run_chain`). By default they run one after the other through :meth:`Executor.run`;
an executor that can stream records from one step to the next overrides it (the local one does).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from condor.llm.base import Usage
from condor.run.steps import ModelStep
from condor.run.store import StageStore
from condor.stages.base import Record

if TYPE_CHECKING:
    from condor.run.orchestrate import StepChain
    from condor.run.progress import StageProgress


@dataclass
class StageOutcome:
    """What one execution of a model step did; merged into the manifest."""

    stage: str
    inputs: int = 0
    resumed: int = 0
    records: int = 0
    rejections: int = 0
    failures: int = 0
    usage: Usage = field(default_factory=Usage)
    seconds: float = 0.0
    #: ``{input_id: content hash}`` of every input seen (with ``collect_hashes``), so callers need not
    #: hash the inputs again.
    input_hashes: dict[str, str] = field(default_factory=dict, repr=False)
    #: ``{role: backend description}`` of the backends that served the step.
    models: dict[str, Any] = field(default_factory=dict)
    #: The step's store holds exactly one unit per current input, in its main shard (nothing superseded,
    #: nothing of inputs that are gone): readers then need no ``input_hashes``.
    plain: bool = False
    #: The step's counts as it now is (resumed units included: units, records, rejections, failures,
    #: reasons), when the executor kept them; otherwise the orchestrator reads them from the store.
    summary: dict[str, Any] | None = None

    def count(self, progress: "StageProgress", *, records: int, rejections: int, failed: bool, usage: Usage) -> None:
        """Count one finished input here and on its progress bar (every executor's bookkeeping)."""
        progress.done += 1
        progress.requests += usage.requests - usage.cached
        progress.tokens += usage.completion_tokens
        progress.retries += usage.retries
        progress.failures += failed
        progress.rejections += rejections
        self.records += records
        self.rejections += rejections
        self.failures += failed
        self.usage.merge(usage)

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "resumed": self.resumed,
            "records": self.records,
            "rejections": self.rejections,
            "failures": self.failures,
            "usage": self.usage.as_dict(),
            "seconds": round(self.seconds, 3),
        }


class Executor(ABC):
    """Runs model steps. One instance serves every model step of a pipeline run."""

    @abstractmethod
    async def run(self, step: ModelStep, inputs: Iterable[Record], store: StageStore, *, total: int | None) -> StageOutcome:
        """Process every input of ``step`` not already done in ``store``; append one unit per input.

        Returns when every input has a unit. Raises :class:`~condor.llm.base.BackendUnavailable` when
        the backend stops answering altogether (finished units stay, and a rerun resumes).
        """

    async def run_chain(self, chain: "StepChain") -> None:
        """Run the unfinished steps ``chain.steps`` (model and gate steps), each finished with
        ``chain.model_done`` / ``chain.gate_done`` in order.

        This default runs them one after the other: each model step through :meth:`run` over its
        inputs read from the run directory, each gate step whole (``chain.gate_whole``). An executor
        that streams records from step to step (:mod:`condor.run.flow`) overrides it.
        """
        for step in chain.steps:
            if isinstance(step, ModelStep):
                outcome = await self.run(step, chain.inputs(step), chain.store(step), total=chain.total(step))
                chain.model_done(step, outcome)
            else:
                chain.gate_whole(step)

    def model_of(self, role: str) -> str:
        """The identity of the model that serves ``role`` (for provenance)."""
        return "unknown"

    async def aclose(self) -> None:
        """Release backends and workers."""
