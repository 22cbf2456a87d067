"""Inside a Ray worker: a block of a model step's inputs in, its units in the block's own shard, counts out.

:class:`BlockWorker` is the callable class that the Ray executor hands to ``Dataset.map_batches``.
Ray builds one per worker process; it builds the role's backend there from the (picklable, already
validated) settings with :mod:`condor.llm.registry`, so API keys are read from the worker's own
environment and never travel in a payload. Each batch (a block of staged input lines) is processed with
the same :func:`~condor.run.unit.make_unit` as the local executor, up to ``window`` records at once
(shared by the blocks a worker holds at the same time), and every finished unit is appended at once to
the block's shard ``units-<writer>.jsonl``: a worker killed mid-block loses only the requests it had in
flight. When Ray runs the block again, units already in its shard are not redone.

What goes back to the driver is one small row per input (counts, token usage, and whether it failed
at the transport level), never the records themselves. A worker counts transport failures in a row
across all the blocks it runs (:class:`~condor.run.unit.OutageBreaker`), and so does the driver over
every worker's rows, so a server that goes down stops the step however the inputs fall into blocks.
A block that must stop the step ends with one more row, whose ``stop`` names the error; once the
breaker has tripped, no request waiting for a slot is sent.

The request cache: by default, with a local Ray, workers share the run's SQLite file with the driver
(all on one host: WAL, short write transactions, see :mod:`condor.llm.cache`). On a cluster, where
the run directory is on a network filesystem and SQLite's locking does not hold, each node keeps its
own file on local disk (``<tmp>/condor-cache/<run>.sqlite``, see :func:`cache_file`); a cache file the
user names is used on the driver's host and beside it, one file per node, elsewhere. Each worker
writes its cache entries after every block, not only when Ray drops it (which Ray does not promise).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Coroutine, Iterable, TypeVar

from condor.llm.base import BackendUnavailable, LLMBackend, Usage
from condor.llm.settings import settings_key
from condor.run.ray_blocks import STOP_KINDS, stop_text
from condor.run.recovery import OutputChecks
from condor.run.steps import ModelStep
from condor.run.store import RunStoreError, StageStore
from condor.run.unit import OutageBreaker, make_unit, server_of

T = TypeVar("T")

#: How long a dropped worker waits for its backend's connections to close.
CLOSE_SECONDS = 5.0

#: Columns of the rows a block returns to the driver: one row per input, and a last one with ``stop``
#: set when the block stops the step.
RESULT_COLUMNS = ("input_id", "records", "rejections", "failed", "transient", "error", "resumed", "requests",
                  "cached", "retries", "request_failures", "prompt_tokens", "completion_tokens", "stop")


@dataclass(frozen=True)
class BlockJob:
    """What every worker of one step needs: picklable, no open files or connections."""

    step: ModelStep
    settings: Any  # the role's backend settings (a pydantic model of llm/settings.py), sized for one worker
    stage_dir: str  # absolute: a worker's working directory is not the driver's
    writer_prefix: str
    window: int
    outage_after: int
    cache_path: str | None = None  # absolute, as the driver sees it
    driver_node: str | None = None
    #: Every node keeps its cache on its own disk (a cluster, and no cache file named by the user).
    cache_on_node: bool = False


def cache_file(path: str, driver_node: str | None, node: str | None, on_node: bool = False) -> Path:
    """The cache file a worker on ``node`` uses for the run cache ``path``.

    ``on_node``: a file on this node's local disk, named after ``path`` so that a rerun on the same node
    finds it. Otherwise ``path`` itself on the driver's host, and a file of its own beside it on others.
    """
    if on_node:
        digest = hashlib.sha256(path.encode("utf-8")).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "condor-cache" / f"{Path(path).stem}-{digest}.sqlite"
    if driver_node is None or node is None or node == driver_node:
        return Path(path)
    base = Path(path)
    return base.with_name(f"{base.stem}-node-{node[:12]}{base.suffix}")


def writer_name(prefix: str, first_input_id: str) -> str:
    """The shard writer of a block: unique per block of one execution (blocks never share an input),
    and the same when Ray runs the block again after a worker died."""
    return f"{prefix}-{hashlib.sha1(first_input_id.encode('utf-8')).hexdigest()[:12]}"


class BlockWorker:
    """``map_batches`` callable: one instance per Ray worker process, one call per block."""

    def __init__(self, job: BlockJob) -> None:
        self.job = job
        # The worker's own event loop, in a thread of its own: Ray may hand this worker a second block
        # while the first is in its tail, and both then share the loop, the backend and the window.
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="condor-block-worker", daemon=True)
        self.thread.start()
        self.slots = asyncio.Semaphore(job.window)
        self.cache: Any = None
        self.backend = self.wait(self._open())
        # Kept across blocks: blocks can be smaller than the streak that means the server is down.
        self.breaker = OutageBreaker(job.outage_after, server_of(self.backend))

    def wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the worker's loop and wait for it (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _open(self) -> LLMBackend:
        from condor.llm.registry import open_backend

        if self.job.cache_path is not None:
            from condor.llm.cache import RequestCache

            self.cache = RequestCache(cache_file(self.job.cache_path, self.job.driver_node, _node_id(),
                                                 self.job.cache_on_node))
        # The driver checked the server already; this learns its structured-output dialect from the
        # cache's notes where it can (no new probe) and loads model files for in-process backends.
        return await open_backend(self.job.settings, cache=self.cache)

    def __del__(self) -> None:
        # Ray ends a worker's life by dropping it: close connections then (the cache is written after
        # every block already). Never wait without bound here: when the worker is dropped only as its
        # process ends, the loop's daemon thread no longer runs, and a plain wait would keep the
        # process, and the CPUs Ray reserved for it, forever (seen: an orphaned worker stuck here).
        thread = getattr(self, "thread", None)
        if thread is None or not thread.is_alive() or sys.is_finalizing():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.backend.aclose(), self.loop).result(timeout=CLOSE_SECONDS)
        except Exception:  # noqa: BLE001 - a connection that will not close must not keep the worker
            pass
        finally:
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:
                pass  # the loop is closed already

    def __call__(self, batch: dict[str, Any]) -> dict[str, list]:
        items = [json.loads(line) for line in batch["text"]]
        return self.wait(self.block(items))

    async def block(self, items: list[dict[str, Any]]) -> dict[str, list]:
        """Process ``items`` (``{"id", "hash", "record"}``) into the block's shard; one result row each."""
        job, step = self.job, self.job.step
        assert step.stage is not None
        out: dict[str, list] = {name: [] for name in RESULT_COLUMNS}
        if not items:
            return out
        store = StageStore(Path(job.stage_dir), step.name, writer_name(job.writer_prefix, items[0]["id"]))
        # What stops the step is handed back as a last row, not raised. A Ray task that fails makes Ray
        # Data shut the job down without killing its actors: they live on, holding their CPUs, while
        # anything still holds a handle (seen: the next job waiting for them). The driver raises it
        # from the row and closes the job, and a closed job's actors are killed.
        try:
            store.open()
            earlier = _finished_here(store.own_units())
            key = settings_key(step.settings)
            pending = []
            for item in items:
                unit = earlier.get(item["id"])
                # Made for this content under these settings (a unit made under others is redone).
                if unit is not None and unit.get("input_hash") == item["hash"] and unit.get("settings") in (None, key):
                    _add_row(out, unit, Usage(), resumed=True)
                else:
                    pending.append(item)
            await self._run(pending, store, out)
        except STOP_KINDS as exc:
            _add_stop(out, exc)
        except OSError as exc:  # a full disk, a permission: the shard cannot be read or written
            _add_stop(out, RunStoreError(f"block shard {store.units_path}: {exc}"))
        finally:
            store.close()
            if self.cache is not None:
                self.cache.flush()
        return out

    async def _run(self, items: list[dict[str, Any]], store: StageStore, out: dict[str, list]) -> None:
        job, step = self.job, self.job.step
        assert step.stage is not None
        checks = OutputChecks(step.checks, step.resamples, reject_input=step.carries)
        structured = getattr(job.settings, "structured", "auto")
        key = settings_key(step.settings)

        down: list[BackendUnavailable] = []

        async def one(item: dict[str, Any]) -> None:
            async with self.slots:
                if down or self.breaker.tripped:
                    # The server is down (seen by this block, or by another of this worker's blocks,
                    # whose stop row is on its way to the driver): nothing more is sent.
                    down.append(self.breaker.outage())
                    return
                unit, usage = await make_unit(step.stage, self.backend, item["record"], item["hash"],  # type: ignore[arg-type]
                                              structured=structured, checks=checks, settings=key)
                # Written and observed before the slot is free: a request waiting for the slot must not be
                # sent after the failure that completes an outage streak, and every unit the breaker
                # counted is in the shard when the block stops.
                store.append(unit)
                _add_row(out, unit, usage, resumed=False)
                outage = self.breaker.observe(bool(unit.get("transient")), unit.get("error"))
                if outage is not None:
                    down.append(outage)

        tasks = [asyncio.ensure_future(one(item)) for item in items]
        try:
            for finished in asyncio.as_completed(tasks):
                await finished
                if down:
                    raise down[0]
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _finished_here(units: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The latest unit per input in this block's shard, leaving out transport failures (sent again)."""
    latest: dict[str, dict[str, Any]] = {}
    for unit in units:
        if unit.get("error") and unit.get("transient"):
            latest.pop(unit["input_id"], None)
        else:
            latest[unit["input_id"]] = unit
    return latest


def _add_row(out: dict[str, list], unit: dict[str, Any], usage: Usage, *, resumed: bool) -> None:
    out["input_id"].append(unit["input_id"])
    out["records"].append(len(unit.get("records", ())))
    out["rejections"].append(len(unit.get("rejections", ())))
    out["failed"].append(bool(unit.get("error")))
    out["transient"].append(bool(unit.get("error") and unit.get("transient")))
    out["error"].append(str(unit.get("error") or "")[:300])
    out["resumed"].append(resumed)
    out["requests"].append(usage.requests)
    out["cached"].append(usage.cached)
    out["retries"].append(usage.retries)
    out["request_failures"].append(usage.failures)
    # A unit written by an attempt of this block that Ray cut short still cost its tokens: count them.
    tokens = unit.get("usage") or {}
    out["prompt_tokens"].append(int(tokens.get("prompt_tokens", 0)))
    out["completion_tokens"].append(int(tokens.get("completion_tokens", 0)))
    out["stop"].append("")


def _add_stop(out: dict[str, list], exc: BaseException) -> None:
    """The row that stops the step: no input, nothing counted, the error's kind and message in ``stop``."""
    row: dict[str, Any] = dict.fromkeys(RESULT_COLUMNS, 0)
    row.update(input_id="", failed=False, transient=False, error="", resumed=False, stop=stop_text(exc))
    for name in RESULT_COLUMNS:
        out[name].append(row[name])


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside Ray (tests call the worker directly)
        return None
