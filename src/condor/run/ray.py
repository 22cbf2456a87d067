"""The Ray executor: the same model steps, run by Ray Data workers on this machine or on a cluster.

For each model step the driver (the ``condor`` process) writes the inputs not yet done as block files
of JSON lines under the step's directory (``stages/<step>/.ray-<token>/``, removed when the step
ends), reads them back as a Ray dataset (``ray.data.read_text``) and ``map_batches`` them through
:class:`~condor.run.ray_worker.BlockWorker`: each worker builds the role's backend from the settings,
makes each input's unit with the local executor's own code (:mod:`condor.run.unit`: prompts, parsing,
the recovery ladder, output checks) and appends it to the block's own shard, ``units-<writer>.jsonl``,
which the run reader merges with every other shard. One small row per input comes back to the driver
for progress and token accounting; records never pass through it.

Resuming: the driver skips inputs whose unit is already in any shard (as the local executor does),
and a block that Ray runs again after its worker died skips the units already in its shard, so a kill
of a worker, or of the driver, loses only the requests in flight. The request cache is shared by the
workers of one host (see :mod:`condor.run.ray_worker`).

Where it runs: with no address the command starts a local Ray (``ray.num_cpus``) and stops it at the
end; with ``ray.address`` it joins that cluster, whose nodes need Condor installed, the run directory on
a filesystem they all see, and the API key variables set in their own environment (keys are never
shipped in a payload). It leaves out streaming from one step to the next (each step is one Ray Data
job) and in-process engines driven by Ray Data's LLM processors (:mod:`condor.run.ray_llm`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from condor.config import ROLES, RunConfig
from condor.errors import ConfigError
from condor.llm.base import BackendUnavailable, LLMBackend
from condor.llm.settings import settings_key
from condor.run.executor import Executor, StageOutcome
from condor.run.progress import ProgressBoard, StageProgress
from condor.run.ray_worker import BlockJob, BlockWorker
from condor.run.steps import ModelStep
from condor.run.store import RunStoreError, StageStore, dumps, record_hash

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
        self._handle.write(dumps({"id": record["id"], "hash": digest, "record": record}) + "\n")
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
        start Ray."""
        cache = None
        if cache_path is not None:
            from condor.llm.cache import RequestCache

            cache = RequestCache(cache_path)
        executor = cls(cfg, cache, **options)
        try:
            executor._ray = import_ray()
            await executor._check_backends()
            executor._start_ray()
            executor._open_processors()
        except BaseException:
            await executor.aclose()
            raise
        return executor

    async def _check_backends(self) -> None:
        from condor.llm.registry import build_backend

        by_config: dict[str, LLMBackend] = {}
        for role in ROLES:
            settings = self.cfg.backend_for(role)
            if settings.backend == ENGINE_KIND:
                continue  # built once Ray runs: it needs the cluster's GPUs
            key = settings.model_dump_json()
            known = key in by_config
            if not known:
                by_config[key] = build_backend(settings, cache=self.cache)
            self.backends[role] = by_config[key]  # closed by aclose() even if its check fails
            if not known:
                # Model files are loaded by the workers, not here: only the server or file is checked.
                await by_config[key].check()

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

    def _open_processors(self) -> None:
        from condor.llm.cache import CachedBackend
        from condor.run.ray_llm import ProcessorBackend

        by_config: dict[str, LLMBackend] = {}
        for role in ROLES:
            settings = self.cfg.backend_for(role)
            if settings.backend != ENGINE_KIND:
                continue
            key = settings.model_dump_json()
            if key not in by_config:
                backend: LLMBackend = ProcessorBackend(settings, self._ray.cluster_resources())
                by_config[key] = CachedBackend(backend, self.cache) if self.cache is not None else backend
            self.backends[role] = by_config[key]

    def model_of(self, role: str) -> str:
        return self.backends[role].identity

    def _shape(self, settings: Any) -> tuple[int, int, float, Any]:
        """Workers, records in flight per worker, CPUs per worker, and the settings one worker gets."""
        cpus = float(self._ray.cluster_resources().get("CPU", 1.0))
        workers = self.cfg.ray.workers or max(1, int(cpus))
        # The role's concurrency is what the server can take: split it over the workers.
        per_worker = max(1, math.ceil(settings.concurrency / workers))
        sized = settings.model_copy(update={"concurrency": per_worker})
        if settings.backend == "embedded" and settings.n_threads is None:
            sized = sized.model_copy(update={"n_threads": max(1, int(cpus) // workers)})
        window = max(4, per_worker * 2)
        # Leave room for the read tasks: workers wait on models far more than they compute.
        per_cpu = min(1.0, max(0.05, (cpus - 0.5) / workers))
        return workers, window, per_cpu, sized

    async def run(self, step: ModelStep, inputs: Iterable[dict[str, Any]], store: StageStore, *,
                  total: int | None) -> StageOutcome:
        assert step.stage is not None
        started = time.monotonic()
        role = step.stage.role
        settings = self.cfg.backend_for(role)
        if settings.backend == ENGINE_KIND:
            return await self._run_on_processor(step, inputs, store, total)
        workers, window, per_cpu, sized = self._shape(settings)
        # Blocks of a few windows, at least four per worker so that none waits on another's last block.
        block_size = self.cfg.ray.block_size or min(8 * window, max(window, math.ceil((total or 0) / (4 * workers))))
        outcome = StageOutcome(step.stage.name)
        progress = StageProgress(step.stage.name, total)
        done = store.done_map(include_failed=not self.retry_failed, include_transient=False,
                              settings=settings_key(step.settings))
        for stale in store.directory.glob(STAGING_PREFIX + "*") if store.directory.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)  # left by a driver that was killed; we hold the run lock
        token = f"{int(time.time()):x}{os.getpid() % 4096:03x}"
        staged = BlockFiles(store.directory / f"{STAGING_PREFIX}{token}", block_size)
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
                step=step, settings=sized, stage_dir=str(store.directory), writer_prefix=f"ray{token}",
                window=window, outage_after=max(32, window),
                cache_path=str(self.cache.path) if self.cache is not None else None,
                driver_node=self._ray.get_runtime_context().get_node_id(),
            )
            with self.board.track(progress):
                if files:
                    await self._execute(job, files, workers, per_cpu, block_size, outcome, progress)
        finally:
            staged.remove()
        outcome.seconds = time.monotonic() - started
        outcome.models[role] = self.backends[role].describe()
        return outcome

    async def _run_on_processor(self, step: ModelStep, inputs: Iterable[dict[str, Any]], store: StageStore,
                                total: int | None) -> StageOutcome:
        """A vllm role: the step runs here, and its requests go through Ray Data's LLM processor in passes."""
        from condor.run.local import StageRunner
        from condor.run.ray_llm import PASS_SIZE
        from condor.run.recovery import OutputChecks

        assert step.stage is not None
        role = step.stage.role
        runner = StageRunner(
            step.stage, self.backends[role], store, structured=self.cfg.backend_for(role).structured,
            window=PASS_SIZE, board=self.board, retry_failed=self.retry_failed, collect_hashes=True,
            checks=OutputChecks(step.checks, step.resamples, reject_input=step.carries),
            settings_key=settings_key(step.settings),
        )
        outcome = await runner.run(inputs, total=total)
        outcome.models[role] = self.backends[role].describe()
        return outcome

    async def _execute(self, job: BlockJob, files: list[Path], workers: int, per_cpu: float, block_size: int,
                       outcome: StageOutcome, progress: StageProgress) -> None:
        ray = self._ray
        dataset = ray.data.read_text([str(path) for path in files], override_num_blocks=len(files), num_cpus=0.25)
        results = dataset.map_batches(
            BlockWorker, fn_constructor_kwargs={"job": job}, batch_size=block_size, batch_format="numpy",
            # Two blocks at once per worker: the next one fills the window while the last one's slowest
            # requests finish.
            compute=ray.data.ActorPoolStrategy(size=max(1, min(workers, len(files))), max_concurrent_calls_per_actor=2,
                                               enable_true_multi_threading=True),
            num_cpus=per_cpu,
        )

        stop = threading.Event()

        def consume() -> None:
            # Runs in a thread: Ray's iterator blocks. Counters are plain ints, read by the board.
            for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
                if stop.is_set():
                    return  # the command was interrupted: what the workers finished is in their shards
                for i in range(len(batch["input_id"])):
                    progress.done += 1
                    records, rejections = int(batch["records"][i]), int(batch["rejections"][i])
                    failed = bool(batch["failed"][i])
                    outcome.records += records
                    outcome.rejections += rejections
                    outcome.failures += failed
                    progress.rejections += rejections
                    progress.failures += failed
                    requests, cached = int(batch["requests"][i]), int(batch["cached"][i])
                    completion = int(batch["completion_tokens"][i])
                    progress.requests += requests - cached
                    progress.tokens += completion
                    progress.retries += int(batch["retries"][i])
                    usage = outcome.usage
                    usage.requests += requests
                    usage.cached += cached
                    usage.retries += int(batch["retries"][i])
                    usage.failures += failed
                    usage.prompt_tokens += int(batch["prompt_tokens"][i])
                    usage.completion_tokens += completion

        async def ticker() -> None:
            while True:
                await asyncio.sleep(0.25)
                self.board.refresh()

        tick = asyncio.create_task(ticker())
        try:
            await asyncio.to_thread(consume)
        except Exception as exc:
            raise _plain(exc) from None
        finally:
            stop.set()
            tick.cancel()

    async def aclose(self) -> None:
        closed: set[int] = set()
        for backend in self.backends.values():
            if id(backend) not in closed:
                closed.add(id(backend))
                await backend.aclose()
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


def _plain(exc: BaseException) -> BaseException:
    """The error a worker raised, without Ray's wrapping, so the CLI shows it as one line."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for kind in (BackendUnavailable, ConfigError, RunStoreError):
            if isinstance(current, kind) and type(current) is kind:
                return kind(*current.args)
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return BackendUnavailable(f"the Ray job failed ({first}); finished work is saved: rerun the same command to resume")
