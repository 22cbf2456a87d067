"""The Ray executor: the same model steps, run by Ray Data workers on this machine or on a cluster.

For each model step the driver (the ``condor`` process) writes the inputs not yet done as block files
of JSON lines under the step's directory (``stages/<step>/.ray-<token>/``, removed when the step
ends), reads them back as a Ray dataset (``ray.data.read_text``) and ``map_batches`` them through
:class:`~condor.run.ray_worker.BlockWorker`: each worker builds the role's backend from the settings,
makes each input's unit with the local executor's own code (:mod:`condor.run.unit`: prompts, parsing,
the recovery ladder, output checks) and appends it to the block's own shard, ``units-<writer>.jsonl``,
which the run reader merges with every other shard. One small row per input comes back to the driver
for progress, token accounting and the outage breaker; records never pass through it. A worker that
must stop the step (the server is down, a shard cannot be written) hands the error back as a last row
instead of failing its Ray task: the driver raises it and closes the job, which kills the job's actors
(a failed task would leave them alive, holding their CPUs, while anything held their handles). When the job
ends, every staged input must have its unit, or the step fails with one line instead of being marked
complete (a worker that wrote its units somewhere the driver cannot see).

Resuming: the driver skips inputs whose unit is already in any shard (as the local executor does),
and a block that Ray runs again after its worker died skips the units already in its shard, so a kill
of a worker, or of the driver, loses only the requests in flight. Where each worker keeps its request
cache (the run's file with a local Ray, each node's own disk on a cluster) is in
:mod:`condor.run.ray_worker`.

Where it runs: with no address the command starts a local Ray (``ray.num_cpus``) and stops it at the
end; with ``ray.address`` it joins that cluster, whose nodes need Condor installed, the run directory on
a filesystem they all see, and the API key variables set in their own environment (keys are never
shipped in a payload). Roles of the ``vllm`` kind run their engines through Ray Data's LLM processors
instead (:mod:`condor.run.ray_llm`). It leaves out streaming from one step to the next: each step is
one Ray Data job.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import shutil
import socket
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from condor.config import RunConfig
from condor.errors import ConfigError
from condor.llm.base import BackendUnavailable, LLMBackend
from condor.llm.settings import settings_key
from condor.run.executor import Executor, StageOutcome
from condor.run.progress import ProgressBoard, StageProgress
from condor.run.ray_blocks import STOP_KINDS, BlockFiles, Shape, check_every_input_has_a_unit, count_rows, shape
from condor.run.ray_worker import BlockJob, BlockWorker
from condor.run.steps import ModelStep
from condor.run.store import StageStore, record_hash
from condor.run.unit import OutageBreaker, server_of

if TYPE_CHECKING:
    from condor.llm.cache import RequestCache

log = logging.getLogger(__name__)

#: Staged input blocks live in hidden folders of the step's directory, apart from its shards.
STAGING_PREFIX = ".ray-"
INSTALL_HINT = "the Ray executor needs Ray: pip install 'condor-data[ray]'"
#: The backend kind whose engines Ray Data's LLM processors run (see condor.run.ray_llm).
ENGINE_KIND = "vllm"


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


class RayExecutor(Executor):
    """Runs model steps as Ray Data jobs. Build it with :meth:`open`; close it with :meth:`aclose`."""

    def __init__(self, cfg: RunConfig, cache: "RequestCache | None", *, board: ProgressBoard | None = None,
                 retry_failed: bool = False) -> None:
        self.cfg = cfg
        self.cache = cache
        self.board = board or ProgressBoard(quiet=True)
        self.retry_failed = retry_failed
        self.backends: dict[str, LLMBackend] = {}
        self._started_ray = False
        self._ray: Any = None

    @classmethod
    async def open(cls, cfg: RunConfig, cache_path: Path | None, **options: Any) -> "RayExecutor":
        """Check every role's backend from here (a wrong address fails before Ray starts), then join or
        start Ray, then open the roles whose engines Ray runs."""
        from condor.llm.registry import open_backend, open_roles

        cache = None
        if cache_path is not None:
            from condor.llm.cache import RequestCache

            cache = RequestCache(cache_path)
        executor = cls(cfg, cache, **options)
        try:
            executor._ray = import_ray()

            async def checked(settings: Any, cache: "RequestCache | None") -> LLMBackend:
                # Model files are loaded by the workers, not here: only the server or file is checked.
                return await open_backend(settings, cache=cache, warm_up=False)

            executor.backends = await open_roles(cfg, cache, checked, only=lambda s: s.backend != ENGINE_KIND)
            executor._start_ray()
            # Built once Ray runs: they need the cluster's GPUs.
            executor.backends.update(await open_roles(cfg, cache, executor._processor, only=lambda s: s.backend == ENGINE_KIND))
        except BaseException:
            await executor.aclose()
            raise
        return executor

    async def _processor(self, settings: Any, cache: "RequestCache | None") -> LLMBackend:
        from condor.llm.cache import CachedBackend
        from condor.run.ray_llm import ProcessorBackend

        backend: LLMBackend = ProcessorBackend(settings, self._ray.cluster_resources())
        return CachedBackend(backend, cache) if cache is not None else backend

    def _start_ray(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
            address = self.cfg.ray.address
            if address is None:
                ray.init(address="local", num_cpus=self.cfg.ray.num_cpus, **options)
            else:
                _answers(address)
                try:
                    ray.init(address=address, **options)
                except (ConnectionError, RuntimeError, ValueError) as exc:
                    raise BackendUnavailable(f"cannot join the Ray cluster at {address}: {exc}") from None
            self._started_ray = True
        context = ray.data.DataContext.get_current()
        # The board shows progress; Ray's own bars and plan printouts would interleave with it.
        context.enable_progress_bars = False
        context.print_on_execution_start = False
        # Ray Data's notes (execution plans, "progress bars disabled") are not the user's business.
        logging.getLogger("ray.data").setLevel(logging.ERROR)

    def model_of(self, role: str) -> str:
        return self.backends[role].identity

    async def run(self, step: ModelStep, inputs: Iterable[dict[str, Any]], store: StageStore, *,
                  total: int | None) -> StageOutcome:
        assert step.stage is not None
        started = time.monotonic()
        role = step.stage.role
        settings = self.cfg.backend_for(role)
        if settings.backend == ENGINE_KIND:
            return await self._run_on_processor(step, inputs, store, total)
        spread = shape(settings, float(self._ray.cluster_resources().get("CPU", 1.0)), self.cfg.ray.workers)
        block_size = spread.block_size(total, self.cfg.ray.block_size)
        outcome = StageOutcome(step.stage.name)
        progress = StageProgress(step.stage.name, total)
        done = store.done_map(include_failed=not self.retry_failed, include_transient=False,
                              settings=settings_key(step.settings))
        for stale in store.directory.glob(STAGING_PREFIX + "*") if store.directory.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)  # left by a driver that was killed; we hold the run lock
        token = f"{int(time.time()):x}{os.getpid() % 4096:03x}"
        # Absolute paths: a worker's working directory is not the driver's (it is the one Ray started
        # in), and a relative -o or cache: would have it read and write somewhere else.
        # absolute(), not resolve(): a link below the run directory is refused, never followed.
        store.refuse_links()
        stage_dir = store.directory.absolute()
        staged = BlockFiles(stage_dir / f"{STAGING_PREFIX}{token}", block_size)
        try:
            for record in inputs:
                outcome.inputs += 1
                digest = record_hash(record)
                outcome.input_hashes[record["id"]] = digest
                if record["id"] in done and done[record["id"]] in (digest, None):
                    outcome.resumed += 1
                    progress.resumed += 1
                    continue
                staged.add(record, digest)
            files = staged.close()
            job = BlockJob(
                step=step, settings=spread.settings, stage_dir=str(stage_dir),
                writer_prefix=f"ray{token}", window=spread.window, outage_after=max(32, spread.window),
                cache_path=str(self.cache.path.resolve()) if self.cache is not None else None,
                driver_node=self._ray.get_runtime_context().get_node_id(),
                # On a cluster the run directory is on a network filesystem, where SQLite's locking does
                # not hold: unless the user named a cache file, each node keeps one on its own disk.
                cache_on_node=self.cfg.cache is None and self.cfg.ray.address is not None,
            )
            # Each worker counts its own failures in a row; this counts them over all workers' rows, so an
            # outage stops the step even when no single worker sees a long enough streak.
            breaker = OutageBreaker(spread.outage_after, server_of(self.backends[role]))
            with self.board.track(progress):
                if files:
                    await self._execute(job, files, spread, block_size, outcome, progress, breaker)
                    check_every_input_has_a_unit(store, outcome.input_hashes)
        finally:
            staged.remove()
        outcome.seconds = time.monotonic() - started
        outcome.models[role] = self.backends[role].describe()
        return outcome

    async def _run_on_processor(self, step: ModelStep, inputs: Iterable[dict[str, Any]], store: StageStore,
                                total: int | None) -> StageOutcome:
        """A vllm role: the step runs here, with the local executor and a window as wide as a pass, and
        its requests go through Ray Data's LLM processor in passes."""
        from condor.run.local import LocalExecutor
        from condor.run.ray_llm import PASS_SIZE

        assert step.stage is not None
        role = step.stage.role
        local = LocalExecutor({role: self.backends[role]}, structured={role: self.cfg.backend_for(role).structured},
                              board=self.board, retry_failed=self.retry_failed, window=PASS_SIZE)
        return await local.run(step, inputs, store, total=total)

    async def _execute(self, job: BlockJob, files: list[Path], spread: Shape, block_size: int, outcome: StageOutcome,
                       progress: StageProgress, breaker: OutageBreaker) -> None:
        failure = await self._job(job, files, spread, block_size, outcome, progress, breaker)
        # Every Ray object of the job lived in _job's frame, gone now. Some sit in reference cycles (a
        # failed job's traceback holds its executor's frames), and the actors they name keep their CPUs
        # until the cyclic collector runs: seen holding 0.75 of 2 CPUs for as long as a test ran, while
        # the next job's actor pool waited for them (the hang of a rerun after an outage). Collect now.
        gc.collect()
        if failure is not None:
            raise failure  # raised out here, so it carries no context that holds the job alive

    async def _job(self, job: BlockJob, files: list[Path], spread: Shape, block_size: int, outcome: StageOutcome,
                   progress: StageProgress, breaker: OutageBreaker) -> BaseException | None:
        """Run the step's Ray Data job; the plain error it failed with, or None."""
        ray = self._ray
        dataset = ray.data.read_text([str(path) for path in files], override_num_blocks=len(files), num_cpus=0.25)
        results = dataset.map_batches(
            BlockWorker, fn_constructor_kwargs={"job": job}, batch_size=block_size, batch_format="numpy",
            # Two blocks at once per worker: the next one fills the window while the last one's slowest
            # requests finish.
            compute=ray.data.ActorPoolStrategy(size=max(1, min(spread.workers, len(files))),
                                               max_concurrent_calls_per_actor=2, enable_true_multi_threading=True),
            num_cpus=spread.per_cpu,
        )
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if finished.done():
                return
            if error is None:
                finished.set_result(None)
            else:
                finished.set_exception(error)

        def consume() -> None:
            # Ray's iterator blocks, so it is read in a thread. Counters are plain ints, read by the board.
            # iter() here, not in a for statement, so that ``finally`` can close the very generator Ray
            # runs the job in: closing it shuts the job's executor down now, killing its actors, rather
            # than when the generator is collected.
            error: BaseException | None = None
            batches = iter(results.iter_batches(batch_size=None, batch_format="numpy"))
            try:
                for batch in batches:
                    if stop.is_set():
                        return  # the driver gave up (interrupted): what the workers finished is in their shards
                    count_rows(batch, outcome, progress, breaker)
            except Exception as exc:  # handed to the driver as is
                error = exc
            except BaseException as exc:  # noqa: BLE001 - a future cannot carry these (StopIteration, say)
                error = RuntimeError(f"the Ray consumer stopped: {type(exc).__name__}: {exc}")
            finally:
                try:
                    batches.close()
                except Exception:  # noqa: BLE001 - a failed shutdown must not hide the step's own outcome
                    log.debug("closing the Ray iterator failed", exc_info=True)
                try:
                    loop.call_soon_threadsafe(settle, error)
                except RuntimeError:
                    pass  # the driver's loop is closed: nobody waits for this outcome any more

        # A thread of its own, not the loop's executor, and a daemon: asyncio.run joins every executor
        # thread when it ends, so a Ray iterator that never returns (the driver interrupted while the job
        # waits for resources) would keep the process from ending at all.
        consumer = threading.Thread(target=consume, name="condor-ray-consume", daemon=True)
        tick = asyncio.create_task(self.board.redraw())
        try:
            consumer.start()
            await finished
        except Exception as exc:
            failure = _plain(exc)
            _clear_frames(exc)
            return failure
        finally:
            stop.set()
            tick.cancel()
        return None

    async def aclose(self) -> None:
        from condor.llm.registry import close_backends

        await close_backends(self.backends)
        if self.cache is not None:
            self.cache.close()
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False


def _answers(address: str, timeout: float = 5.0) -> None:
    """Fail at once when nothing listens at a cluster address (Ray itself would retry for minutes)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise BackendUnavailable(
            f"no Ray cluster answers at {address} ({reason}); start one with `ray start --head` "
            "or check --ray-address"
        ) from None


def _clear_frames(exc: BaseException) -> None:
    """Drop the local variables of the frames in ``exc``'s tracebacks, along its chain: the frames of a
    failed Ray job hold its executor, which would otherwise live as long as the exception does."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips frames still running (this one's caller)
        current = current.__cause__ or current.__context__


def _plain(exc: BaseException) -> BaseException:
    """The error a worker raised, without Ray's wrapping, so the CLI shows it as one line."""
    kinds = STOP_KINDS
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for kind in kinds:
            if isinstance(current, kind) and type(current) is kind:
                return kind(*current.args)
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    # Ray Data hands back a UserCodeException without the worker's exception, only its traceback as
    # text, whose line "module.Kind: message" still says what went wrong.
    text = str(exc)
    for kind in kinds:
        found = re.search(rf"^{re.escape(kind.__module__)}\.{kind.__qualname__}: (.+)$", text, re.MULTILINE)
        if found:
            return kind(found[1].strip())
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return BackendUnavailable(f"the Ray job failed ({first}); finished work is saved: rerun the same command to resume")
