"""The Ray executor against the local test server, on a local Ray (num_cpus=2) started once for the module.

Acceptance of issue 13: Condor Void and Condor Refine on Ray give the same records as the local
executor (same count, same questions and answers for the same seed), also after a Ray worker is killed
mid-step and after the driver is killed and the command rerun; token usage per step is the same too.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from condor_responder import respond
from fake_server import FakeChatServer, messages_hash

from condor.api import arun_pipeline
from condor.config import load_config
from condor.llm.base import BackendUnavailable
from condor.run.orchestrate import StepRunner
from condor.run.pipeline import build_steps
from condor.run.progress import ProgressBoard
from condor.run.ray_worker import cache_file
from condor.run.settings import effective_settings
from condor.run.directory import RunDirectory

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.ray]

EXPORTS = ("void.jsonl", "sft.jsonl", "preference.jsonl", "rejected.jsonl")
WORKER_TITLE = "BlockWorker"


KEY_VARIABLE, SECRET = "CONDOR_RAY_TEST_KEY", "sk-ray-test-4f1c9e"


@pytest.fixture(scope="module")
def ray_address():
    # Set before Ray starts, as on a real cluster's nodes: workers read the key from their environment.
    os.environ[KEY_VARIABLE] = SECRET
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024,
             logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        os.environ.pop(KEY_VARIABLE, None)


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(responder=respond, latency=0.02) as fake:
        yield fake


def config(server, executor: str, **more):
    values = {"llm.base_url": server.base_url, "llm.model": "fake-model", "llm.concurrency": 8,
              "pipeline.leaves": 4, "pipeline.tasks": ["domain_qa", "creation", "view"], "pipeline.seed": 3,
              "pipeline.relevance": "lexical", "executor": executor, **more}
    return load_config(None, values)


def void_and_refine(cfg, out: Path) -> None:
    asyncio.run(arun_pipeline(cfg, out, mode="void"))
    asyncio.run(arun_pipeline(cfg, out, mode="refine"))


def exports(out: Path) -> dict[str, list[str]]:
    return {name: sorted((out / name).read_text(encoding="utf-8").splitlines()) for name in EXPORTS}


def usage(out: Path) -> dict[str, dict]:
    stages = json.loads((out / "manifest.json").read_text())["stages"]
    return {name: {k: v for k, v in entry["usage"].items() if k in ("prompt_tokens", "completion_tokens")}
            for name, entry in stages.items() if "usage" in entry}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, server):
    out = tmp_path_factory.mktemp("local") / "run"
    void_and_refine(config(server, "local"), out)
    return out


def repeated(log: list[dict]) -> int:
    counts = Counter(messages_hash(body["messages"]) for body in log)
    return sum(n - 1 for n in counts.values() if n > 1)


def test_void_and_refine_on_ray_give_the_local_records_and_usage(tmp_path, ray_address, server, reference):
    out = tmp_path / "ray"
    void_and_refine(config(server, "ray"), out)
    got, want = exports(out), exports(reference)
    assert len(want["void.jsonl"]) > 20 and len(want["sft.jsonl"]) > 20
    assert got == want
    assert usage(out) == usage(reference)
    # Each Ray block wrote its own shard; the main shard was never used.
    answer = out / "stages" / "answer"
    assert list(answer.glob("units-ray*.jsonl")) and not (answer / "units.jsonl").exists()
    assert not list(answer.glob(".ray-*")), "staged input blocks are removed when the step ends"

    # A finished run rerun sends nothing.
    before = server.request_count
    void_and_refine(config(server, "ray"), out)
    assert server.request_count == before


class RecordingBoard(ProgressBoard):
    def __init__(self) -> None:
        super().__init__(quiet=True)
        self.stages = []

    def track(self, stage):
        self.stages.append(stage)
        return super().track(stage)


async def run_void_steps(cfg, out: Path, board: ProgressBoard) -> None:
    from condor.run.plan import load_or_create_plan
    from condor.run.ray import RayExecutor

    settings = effective_settings(cfg)
    run = RunDirectory(out)
    load_or_create_plan(run, cfg.pipeline, settings.tasks, settings.leaves)
    executor = await RayExecutor.open(cfg, out / "cache.sqlite", board=board)
    try:
        await StepRunner(run, executor).run_steps(build_steps(settings, "void"))
    finally:
        await executor.aclose()


def test_progress_counts_every_input_and_keys_stay_in_the_workers_environment(tmp_path, ray_address, server):
    import cloudpickle

    from condor.run.ray_worker import BlockJob

    board = RecordingBoard()
    server.last_headers = {}
    cfg = config(server, "ray", **{"llm.api_key_env": KEY_VARIABLE, "pipeline.leaves": 2})
    asyncio.run(run_void_steps(cfg, tmp_path / "run", board))
    assert [stage.name for stage in board.stages] == ["questions", "answer"]
    for stage in board.stages:
        assert stage.total and stage.done == stage.total and stage.resumed == 0
        assert stage.requests >= stage.total and stage.tokens > 0
        assert stage.rates()[0] > 0
    # The workers sent the key, read from their own environment; it is in no payload and no file.
    assert server.last_headers.get("Authorization") == f"Bearer {SECRET}"
    job = BlockJob(step=build_steps(effective_settings(cfg), "void")[0], settings=cfg.llm, stage_dir="x",
                   writer_prefix="p", window=1, outage_after=1)
    assert SECRET.encode() not in cloudpickle.dumps(job)
    for path in (tmp_path / "run").rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def worker_pids() -> list[int]:
    import psutil

    me = psutil.Process()
    return [p.pid for p in me.children(recursive=True) if WORKER_TITLE in " ".join(_cmdline(p))]


def _cmdline(process) -> list[str]:
    try:
        return process.cmdline()
    except Exception:
        return []


def kill_when(shard_dir: Path, units: int, pick, stop: threading.Event, killed: list[int]) -> None:
    """Once ``units`` answer units are written, SIGKILL what ``pick()`` names (our own processes only)."""
    deadline = time.monotonic() + 240
    while not stop.is_set() and time.monotonic() < deadline:
        written = sum(p.read_bytes().count(b"\n") for p in shard_dir.glob("units*.jsonl")) if shard_dir.exists() else 0
        if written >= units:
            for pid in pick()[:1]:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            if killed:
                return
        time.sleep(0.02)


def test_a_killed_worker_costs_only_its_requests_in_flight(tmp_path, ray_address, server, reference):
    out = tmp_path / "ray"
    server.latency = 0.15
    server.reset_stats()
    stop, killed = threading.Event(), []
    watcher = threading.Thread(target=kill_when, args=(out / "stages" / "answer", 12, worker_pids, stop, killed))
    watcher.start()
    try:
        asyncio.run(arun_pipeline(config(server, "ray"), out, mode="void"))
    finally:
        stop.set()
        watcher.join()
        server.latency = 0.02
    assert killed, "no Ray worker was killed: the step finished first"
    asyncio.run(arun_pipeline(config(server, "ray"), out, mode="refine"))
    assert exports(out) == exports(reference)
    # Sent twice: at most what the killed worker had in flight (its window: 2 x 8 / 2 workers).
    assert repeated(server.request_log) <= 8


def condor_void(out: Path, server, *more: str) -> list[str]:
    return [sys.executable, "-m", "condor.cli.main", "void", "-o", str(out), "--leaves", "4", "--tasks",
            "domain_qa,creation,view", "--seed", "3", "--base-url", server.base_url, "--model", "fake-model",
            "--concurrency", "8", "--quiet", *more]


def cpus_back_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0.0) >= ray.cluster_resources().get("CPU", 0.0):
            return True
        time.sleep(0.2)
    return False


def test_an_outage_stops_the_step_with_the_default_block_sizes(tmp_path, ray_address):
    # 33 inputs in blocks of 8 (the executor's own sizing for concurrency 8 on two workers): no block
    # alone reaches the 32 failures in a row that mean "down", and the step must stop all the same.
    out = tmp_path / "ray"
    with FakeChatServer(responder=respond, fail_rate=1.0, fail_kinds=("500",)) as down:
        cfg = config(down, "ray", **{"pipeline.leaves": 11, "llm.max_retries": 0})
        with pytest.raises(BackendUnavailable, match="requests in a row failed .* seems down"):
            asyncio.run(arun_pipeline(cfg, out, mode="void"))
        # The stopped job's workers give their CPUs back: a job that kept them left the next one (the rerun
        # below) waiting for resources, its iterator blocked, until pytest-timeout ended the test.
        assert cpus_back_within(30.0), f"the stopped job still holds CPUs: {ray.available_resources()}"
        store = RunDirectory(out).stage("questions")
        assert not store.is_complete(), "an outage must not count as a finished step"
        failed = {unit["input_id"] for unit in store.iter_units() if unit.get("transient")}
        assert len(failed) >= 32
        # The server is back: the same command sends every failed item again and finishes.
        down.fail_rate = 0.0
        asyncio.run(arun_pipeline(cfg, out, mode="void"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["questions"]["failures"] == 0 and manifest["stages"]["questions"]["units"] == 33
    assert manifest["stages"]["answer"]["records"] > 0


def test_relative_run_and_cache_paths_reach_the_workers_resolved(tmp_path, ray_address, server, monkeypatch):
    # Ray's workers keep the working directory Ray started in; this command runs somewhere else.
    def working_directory() -> str:
        return os.getcwd()

    workers_cwd = Path(ray.get(ray.remote(working_directory).remote()))
    name = f"relative-{os.getpid()}"
    monkeypatch.chdir(tmp_path)
    assert workers_cwd != tmp_path
    cfg = config(server, "ray", **{"pipeline.leaves": 2, "cache": f"{name}-cache/cache.sqlite"})
    try:
        asyncio.run(arun_pipeline(cfg, Path(name), mode="void"))
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["stages"]["answer"]["records"] > 0 and manifest["stages"]["answer"]["failures"] == 0
        assert list((tmp_path / name / "stages" / "answer").glob("units-ray*.jsonl"))
        assert sqlite3.connect(tmp_path / f"{name}-cache" / "cache.sqlite").execute(
            "SELECT COUNT(*) FROM completions").fetchone()[0] > 0
    finally:
        for stray in (workers_cwd / name, workers_cwd / f"{name}-cache"):
            shutil.rmtree(stray, ignore_errors=True)  # where the workers wrote before the paths were resolved


def test_a_killed_driver_resumes_to_the_same_records(tmp_path, ray_address, server, reference):
    out = tmp_path / "ray"
    (tmp_path / "c.yaml").write_text("pipeline: {relevance: lexical}\n")
    command = condor_void(out, server, "--config", str(tmp_path / "c.yaml"), "--ray-address", ray_address)
    server.latency = 0.15
    server.reset_stats()
    driver = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop, killed = threading.Event(), []
    try:
        kill_when(out / "stages" / "answer", 12, lambda: [driver.pid] if driver.poll() is None else [], stop, killed)
        driver.wait(timeout=120)
    finally:
        server.latency = 0.02
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert killed, "the driver finished before it could be killed"
    assert not (out / "void.jsonl").exists()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    asyncio.run(arun_pipeline(config(server, "ray"), out, mode="refine"))
    assert exports(out) == exports(reference)
    # Sent twice: at most what the two workers had in flight when their driver died.
    assert repeated(server.request_log) <= 16
    # Joined as a cluster, with no cache file named: the workers kept their cache on the node's own disk
    # (SQLite's locking does not hold on a network filesystem), none beside the run directory.
    node_cache = cache_file(str((out / "cache.sqlite").resolve()), None, None, on_node=True)
    try:
        assert sqlite3.connect(node_cache).execute("SELECT COUNT(*) FROM completions").fetchone()[0] > 0
        assert not list(out.glob("cache-node-*"))
    finally:
        node_cache.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{node_cache}{suffix}").unlink(missing_ok=True)


def test_the_command_starts_its_own_ray_when_given_no_address(tmp_path, ray_address, server):
    out = tmp_path / "own"
    (tmp_path / "c.yaml").write_text("pipeline: {relevance: lexical}\nray: {num_cpus: 1}\n")
    done = subprocess.run(condor_void(out, server, "--config", str(tmp_path / "c.yaml"), "--executor", "ray",
                                      "--leaves", "1"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["executor"] == "ray" and manifest["stages"]["answer"]["records"] > 0
    assert (out / "void.jsonl").read_text().count("\n") == manifest["stages"]["answer"]["records"]


def test_the_local_ray_has_no_gpu_and_the_vllm_path_says_so(ray_address):
    from condor.errors import ConfigError
    from condor.run.ray_llm import require_gpus

    with pytest.raises(ConfigError, match="this Ray cluster has none"):
        require_gpus(ray.cluster_resources())


def test_a_linked_step_folder_is_refused_before_anything_is_staged_through_it(tmp_path, ray_address, server):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "run"
    (out / "stages").mkdir(parents=True)
    (out / "stages" / "questions").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(Exception, match="symbolic link"):
        asyncio.run(arun_pipeline(config(server, "ray", **{"pipeline.leaves": 2}), out, mode="void"))
    assert list(elsewhere.iterdir()) == []
