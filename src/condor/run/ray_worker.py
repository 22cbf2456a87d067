"""Inside a Ray worker: a block of a model step's inputs in, its units in the block's own shard, counts out.

:class:`BlockWorker` is the callable class that the Ray executor hands to ``Dataset.map_batches``.
Ray builds one per worker process; it builds the role's backend there from the (picklable, already
validated) settings with :mod:`condor.llm.registry`, so API keys are read from the worker's own
environment and never travel in a payload. Each batch (a block of staged input lines) is processed with
the same :func:`~condor.run.unit.make_unit` as the local executor, up to ``window`` records at once
(shared by the blocks a worker holds at the same time), and every finished unit is appended at once to
the block's shard ``units-<writer>.jsonl``: a worker killed mid-block loses only the requests it had in
flight. When Ray runs the block again, units already in its shard are not redone.

What goes back to the driver is one small row per input (counts and token usage) for progress and the
manifest, never the records themselves.

The request cache: workers on the driver's host share the run's SQLite file (WAL, short write
transactions, see :mod:`condor.llm.cache`); a worker on another host keeps a file of its own beside it,
named after its node, because SQLite's locking only works among processes of one host.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Coroutine, Iterable, TypeVar

from condor.llm.base import BackendUnavailable, LLMBackend, Usage
from condor.llm.settings import settings_key
from condor.run.recovery import OutputChecks
from condor.run.steps import ModelStep
from condor.run.store import StageStore
from condor.run.unit import make_unit

T = TypeVar("T")

#: Columns of the rows a block returns to the driver, one row per input.
RESULT_COLUMNS = ("input_id", "records", "rejections", "failed", "resumed", "requests", "cached", "retries",
                  "prompt_tokens", "completion_tokens")


@dataclass(frozen=True)
class BlockJob:
    """What every worker of one step needs: picklable, no open files or connections."""

    step: ModelStep
    settings: Any  # the role's backend settings (a pydantic model of llm/settings.py), sized for one worker
    stage_dir: str
    writer_prefix: str
    window: int
    outage_after: int
    cache_path: str | None = None
    driver_node: str | None = None


def cache_file(path: str, driver_node: str | None, node: str | None) -> Path:
    """The cache file a worker on ``node`` uses: the run's own on the driver's host, else one per node."""
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
        threading.Thread(target=self.loop.run_forever, name="condor-block-worker", daemon=True).start()
        self.slots = asyncio.Semaphore(job.window)
        self.backend = self.wait(self._open())

    def wait(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the worker's loop and wait for it (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    async def _open(self) -> LLMBackend:
        from condor.llm.registry import build_backend

        cache = None
        if self.job.cache_path is not None:
            from condor.llm.cache import RequestCache

            cache = RequestCache(cache_file(self.job.cache_path, self.job.driver_node, _node_id()))
        backend = build_backend(self.job.settings, cache=cache)
        try:
            # The driver checked the server already; this learns its structured-output dialect from the
            # cache's notes (no new probe) and loads model files for in-process backends.
            await backend.check()
            await backend.warm_up()
        except BaseException:
            await backend.aclose()
            raise
        return backend

    def __del__(self) -> None:
        # Ray ends a worker's life by dropping it: flush the cache and close connections then.
        try:
            self.wait(self.backend.aclose())
            self.loop.call_soon_threadsafe(self.loop.stop)
        except Exception:
            pass

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
        store.open()
        try:
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
        finally:
            store.close()
        return out

    async def _run(self, items: list[dict[str, Any]], store: StageStore, out: dict[str, list]) -> None:
        job, step = self.job, self.job.step
        assert step.stage is not None
        checks = OutputChecks(step.checks, step.resamples, reject_input=step.carries)
        structured = getattr(job.settings, "structured", "auto")
        streak = 0

        async def one(item: dict[str, Any]) -> tuple[dict[str, Any], Usage]:
            async with self.slots:
                return await make_unit(step.stage, self.backend, item["record"], item["hash"],  # type: ignore[arg-type]
                                       structured=structured, checks=checks, settings=settings_key(step.settings))

        tasks = [asyncio.ensure_future(one(item)) for item in items]
        try:
            for finished in asyncio.as_completed(tasks):
                unit, usage = await finished
                store.append(unit)
                _add_row(out, unit, usage, resumed=False)
                streak = streak + 1 if unit.get("transient") else 0
                if streak >= job.outage_after:
                    raise BackendUnavailable(
                        f"{streak} requests in a row failed at {self.backend.identity.split(':', 1)[-1]} "
                        f"(last error: {unit.get('error')}); the server seems down. Finished work is saved: "
                        "rerun the same command to resume, and the failed items will be sent again."
                    )
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
    out["resumed"].append(resumed)
    out["requests"].append(usage.requests)
    out["cached"].append(usage.cached)
    out["retries"].append(usage.retries)
    # A unit written by an attempt of this block that Ray cut short still cost its tokens: count them.
    tokens = unit.get("usage") or {}
    out["prompt_tokens"].append(int(tokens.get("prompt_tokens", 0)))
    out["completion_tokens"].append(int(tokens.get("completion_tokens", 0)))


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside Ray (tests call the worker directly)
        return None
