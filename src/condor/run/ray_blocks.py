"""How the Ray executor cuts a model step into blocks, and what it checks when they come back.

:func:`shape` spreads a role's settings over the workers (its concurrency, which is what each server
can take, and its client-side rate limits are split between them; the window covers every replica of a
list of base URLs); :class:`BlockFiles` stages a step's pending inputs as JSONL block files for
``ray.data.read_text``; :func:`count_rows` counts the rows the workers send back (progress, usage, and
the outage breaker over all workers); :func:`check_every_input_has_a_unit` refuses to let a step count
as done when an input's unit is not where the driver reads. Pure: no Ray here, so all of it is tested
without one.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condor.errors import ConfigError
from condor.llm.base import BackendUnavailable, Usage
from condor.run.executor import StageOutcome
from condor.run.progress import StageProgress
from condor.run.store import RunStoreError, StageStore
from condor.run.unit import OutageBreaker

__all__ = ["BlockFiles", "Shape", "check_every_input_has_a_unit", "count_rows", "shape"]


class BlockFiles:
    """The inputs of one step execution, written as JSONL files of ``block_size`` lines each."""

    def __init__(self, directory: Path, block_size: int) -> None:
        self.directory = directory
        self.block_size = block_size
        self.paths: list[Path] = []
        self._handle: Any = None
        self._lines = 0

    def add(self, record: dict[str, Any], digest: str) -> None:
        if self._handle is None or self._lines >= self.block_size:
            self._close_file()
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"block-{len(self.paths):06d}.jsonl"
            self.paths.append(path)
            self._handle = path.open("w", encoding="utf-8")
            self._lines = 0
        # ASCII only: Ray's read_text splits lines wherever str.splitlines() does, which includes
        # U+2028, U+2029 and U+0085 inside model text; escaped, a record is always one line.
        line = json.dumps({"id": record["id"], "hash": digest, "record": record}, ensure_ascii=True,
                          separators=(",", ":"))
        self._handle.write(line + "\n")
        self._lines += 1

    def _close_file(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def close(self) -> list[Path]:
        self._close_file()
        return self.paths

    def remove(self) -> None:
        self._close_file()
        shutil.rmtree(self.directory, ignore_errors=True)


@dataclass(frozen=True)
class Shape:
    """How one model step is spread over Ray: workers, records in flight per worker, CPUs per worker,
    and the backend settings one worker builds (its share of the server's concurrency and rate limits)."""

    workers: int
    window: int
    per_cpu: float
    settings: Any

    def block_size(self, total: int | None, given: int | None = None) -> int:
        """Inputs per block: a few windows, at least four blocks per worker so that none waits on
        another's last block (``given``: the user's ``ray.block_size``)."""
        return given or min(8 * self.window, max(self.window, math.ceil((total or 0) / (4 * self.workers))))

    @property
    def outage_after(self) -> int:
        """Transport failures in a row that stop the step, as the local executor counts them: at least
        32, and at least what is in flight at once."""
        return max(32, self.workers * self.window)


def shape(settings: Any, cpus: float, workers: int | None = None) -> Shape:
    """The :class:`Shape` of a step whose role has ``settings``, on a Ray with ``cpus`` CPUs."""
    workers = workers or max(1, int(cpus))
    # The role's concurrency is what each server can take (each replica, for a list of base URLs):
    # split it over the workers, and so the client-side rate limits.
    per_worker = max(1, math.ceil(settings.concurrency / workers))
    update: dict[str, Any] = {"concurrency": per_worker}
    for limit in ("requests_per_minute", "tokens_per_minute"):
        if getattr(settings, limit, None) is not None:
            update[limit] = getattr(settings, limit) / workers
    if settings.backend == "embedded" and settings.n_threads is None:
        update["n_threads"] = max(1, int(cpus) // workers)
    servers = len(settings.urls()) if settings.backend == "openai" else 1
    # A worker's backend takes per_worker requests per server at once; twice that keeps it busy.
    window = max(4, per_worker * servers * 2)
    # Leave room for the read tasks: workers wait on models far more than they compute.
    per_cpu = min(1.0, max(0.05, (cpus - 0.5) / workers))
    return Shape(workers, window, per_cpu, settings.model_copy(update=update))


#: Errors a worker hands back as a row that stops the step (see :func:`stop_text`), rather than raising.
STOP_KINDS: tuple[type[Exception], ...] = (BackendUnavailable, ConfigError, RunStoreError)


def stop_text(exc: BaseException) -> str:
    """A stop row's ``stop`` value: the error's kind and message."""
    return f"{type(exc).__name__}: {exc}"


def stop_error(text: str) -> Exception:
    """The error a stop row's ``stop`` value names, as its own kind (one line for the command)."""
    kind, _, message = text.partition(": ")
    for known in STOP_KINDS:
        if known.__name__ == kind:
            return known(message)
    return BackendUnavailable(f"a Ray worker stopped the step: {text}")


def count_rows(batch: dict[str, Any], outcome: StageOutcome, progress: StageProgress, breaker: OutageBreaker) -> None:
    """Count a batch of the workers' rows (:data:`~condor.run.ray_worker.RESULT_COLUMNS`: one per input,
    and a block's stop row) into ``outcome`` and ``progress``. Raises a worker's stop row as its error, and
    :class:`~condor.llm.base.BackendUnavailable` once ``breaker`` has seen its streak of transport
    failures, counted over every worker's rows."""
    for i in range(len(batch["input_id"])):
        if batch["stop"][i]:
            raise stop_error(str(batch["stop"][i]))
        usage = Usage(requests=int(batch["requests"][i]), cached=int(batch["cached"][i]), retries=int(batch["retries"][i]),
                      failures=int(batch["request_failures"][i]), prompt_tokens=int(batch["prompt_tokens"][i]),
                      completion_tokens=int(batch["completion_tokens"][i]))
        outcome.count(progress, records=int(batch["records"][i]), rejections=int(batch["rejections"][i]),
                      failed=bool(batch["failed"][i]), usage=usage)
        outage = breaker.observe(bool(batch["transient"][i]), str(batch["error"][i]))
        if outage is not None:
            raise outage


def check_every_input_has_a_unit(store: StageStore, inputs: dict[str, str]) -> None:
    """Raise (one line) unless every input of ``inputs`` (``{id: hash}``) has a unit for that content:
    a step whose workers wrote their units where this process cannot see them must not count as done."""
    done = store.done_map()
    missing = [input_id for input_id, digest in inputs.items() if input_id not in done or done[input_id] not in (digest, None)]
    if missing:
        raise RunStoreError(
            f"step {store.name!r}: {len(missing)} of {len(inputs)} inputs have no unit in {store.directory} after "
            f"the Ray job (first: {missing[0]}); the workers wrote them elsewhere: the run directory must be on a "
            "filesystem every Ray node sees at the same path (docs/scaling.md)"
        )
