"""The Ray executor's parts that need no Ray: settings, sizing, the block worker's resume and outage
breaker, staging, the driver's row counting, errors, and the request cache (shared by two writers,
written after every block). (Runs on a local Ray are in test_ray_executor.py.)"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time

import pytest
from typer.testing import CliRunner

from condor.cli.main import app
from condor.config import ConfigError, load_config
from condor.llm.base import BackendUnavailable, ChatRequest, Completion
from condor.llm.cache import RequestCache
from condor.llm.settings import OpenAISettings
from condor.run.executor import StageOutcome
from condor.run.progress import StageProgress
from condor.run.ray import _plain
from condor.run.ray_blocks import BlockFiles, check_every_input_has_a_unit, count_rows, shape, stop_error, stop_text
from condor.run.ray_worker import BlockJob, BlockWorker, cache_file, writer_name
from condor.run.unit import OutageBreaker
from condor.run.steps import ModelStep
from condor.run.directory import RunDirectory
from condor.run.store import RunStoreError, StageStore
from condor.stages.base import ParseError, Stage


class EchoStage(Stage):
    name = "echo"
    version = "1"
    role = "answerer"

    def requests(self, record, *, structured=False):
        return [ChatRequest(messages=[{"role": "user", "content": record["text"]}])]

    def parse(self, record, completions, *, structured=False):
        text = completions[0].text
        if not text.startswith("Echo:"):
            raise ParseError("not_an_echo", text[:20])
        return [{**record, "answer": text}]


def test_executor_and_ray_settings_are_validated():
    cfg = load_config(None, {"executor": "ray", "ray.address": "10.0.0.5:6379", "ray.workers": 4})
    assert cfg.executor == "ray" and cfg.ray.address == "10.0.0.5:6379" and cfg.ray.workers == 4
    assert load_config(None, {"ray.address": "ray://head:10001"}).ray.address == "ray://head:10001"
    assert load_config(None, {"ray.address": "auto"}).ray.address == "auto"
    assert load_config(None, {}).executor == "local"
    with pytest.raises(ConfigError, match="executor"):
        load_config(None, {"executor": "spark"})
    with pytest.raises(ConfigError, match="not a Ray address"):
        load_config(None, {"ray.address": "http://head"})
    with pytest.raises(ConfigError, match="ray.workers"):
        load_config(None, {"ray.workers": 0})
    with pytest.raises(ConfigError, match="ray.bogus"):
        load_config(None, {"ray.bogus": 1})


def test_bad_executor_flags_are_one_line_errors(tmp_path):
    for flags in (["--executor", "spark"], ["--ray-address", "not an address"],
                  ["--executor", "local", "--ray-address", "10.0.0.5:6379"]):
        result = CliRunner().invoke(app, ["void", "-o", str(tmp_path / "out"), *flags])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
    assert "--ray-address 10.0.0.5:6379 is for the Ray executor" in result.output
    assert not (tmp_path / "out").exists()
    help_text = CliRunner().invoke(app, ["run", "--help"]).output
    assert "--executor" in help_text and "--ray-address" in help_text


def test_a_cluster_address_where_nothing_listens_fails_at_once(tmp_path, fake_server):
    pytest.importorskip("ray")
    import socket
    import time

    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    result = CliRunner().invoke(app, ["void", "-o", str(tmp_path / "out"), "--base-url", fake_server.base_url,
                                      "--model", "fake-model", "--ray-address", f"127.0.0.1:{port}", "--quiet"])
    assert result.exit_code == 2, result.output
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in result.output and "Traceback" not in result.output
    assert time.monotonic() - started < 30


def test_an_unreachable_server_fails_before_ray_starts(tmp_path, fake_server):
    pytest.importorskip("ray")
    import ray

    url = fake_server.base_url
    fake_server.stop()
    result = CliRunner().invoke(app, ["void", "-o", str(tmp_path / "out"), "--base-url", url, "--model", "fake-model",
                                      "--executor", "ray", "--quiet"])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    assert not ray.is_initialized()


def job(tmp_path, server, retries: int = 6, **more) -> BlockJob:
    settings = OpenAISettings(base_url=server.base_url, model="fake-model", concurrency=4, max_retries=retries)
    return BlockJob(step=ModelStep("echo", stage=EchoStage(), reads="plan"), settings=settings,
                    stage_dir=str(tmp_path / "stages" / "echo"), writer_prefix="rayabc", window=4,
                    **{"outage_after": 32, **more})


def items(n: int) -> list[dict]:
    return [{"id": f"r{i:03d}", "hash": f"h{i}", "record": {"id": f"r{i:03d}", "text": f"t{i}"}} for i in range(n)]


def test_a_block_run_again_skips_the_units_already_in_its_shard(tmp_path, fake_server):
    worker = BlockWorker(job(tmp_path, fake_server))
    try:
        first = worker.wait(worker.block(items(6)[:4]))
        assert first["records"] == [1, 1, 1, 1] and not any(first["resumed"])
        assert fake_server.request_count == 4
        # Ray runs the same block again (its first worker died after four units): only the rest is sent.
        again = worker.wait(worker.block(items(6)))
        assert sorted(again["input_id"]) == [f"r{i:03d}" for i in range(6)]
        assert sum(again["resumed"]) == 4 and fake_server.request_count == 6
        assert sum(again["prompt_tokens"]) > 0  # resumed units still count the tokens they took
    finally:
        del worker
    store = RunDirectory(tmp_path).stage("echo")
    shards = store.shard_paths()
    assert [p.name for p in shards] == [f"units-{writer_name('rayabc', 'r000')}.jsonl"]
    assert sorted(r["id"] for r in store.iter_records()) == [f"r{i:03d}" for i in range(6)]


def test_a_server_that_stops_answering_stops_the_block(tmp_path, fake_server):
    worker = BlockWorker(job(tmp_path, fake_server, retries=0, outage_after=3))
    fake_server.fail_rate, fake_server.fail_kinds = 1.0, ("500",)
    try:
        rows = worker.wait(worker.block(items(10)))
        # The block's last row stops the step (the driver raises it); the rows before it are its inputs.
        assert rows["stop"][-1].startswith("BackendUnavailable: 3 requests in a row failed") and "seems down" in rows["stop"][-1]
        assert not any(rows["stop"][:-1]) and rows["input_id"][-1] == "" and all(rows["input_id"][:-1])
        with pytest.raises(BackendUnavailable, match="seems down"):
            count_rows(rows, StageOutcome("echo"), StageProgress("echo", 10), OutageBreaker(32, "x"))
    finally:
        fake_server.fail_rate = 0.0
        del worker
    # Stopped, rather than recording every input as failed: after the third failure in a row nothing more
    # is sent, so at most the other three requests of the window (4) were in flight.
    assert fake_server.request_count <= 6
    # Every failure the breaker counted is in the block's shard (sent again on the next run).
    units = [json.loads(line) for path in (tmp_path / "stages" / "echo").glob("units-*.jsonl")
             for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(units) >= 3 and all(unit["transient"] for unit in units)


def test_a_shard_that_cannot_be_written_stops_the_step_as_a_row(tmp_path, fake_server, monkeypatch):
    import errno

    def full(self, unit):
        raise OSError(errno.ENOSPC, "No space left on device")

    worker = BlockWorker(job(tmp_path, fake_server))
    monkeypatch.setattr(StageStore, "append", full)
    try:
        rows = worker.wait(worker.block(items(3)))
    finally:
        del worker
    assert rows["stop"][-1].startswith("RunStoreError: block shard ") and "No space left on device" in rows["stop"][-1]
    with pytest.raises(RunStoreError, match="No space left on device"):
        count_rows(rows, StageOutcome("echo"), StageProgress("echo", 3), OutageBreaker(32, "x"))


def test_a_dropped_worker_never_waits_without_bound(tmp_path, fake_server, monkeypatch):
    import threading

    import condor.run.ray_worker as ray_worker

    def dropped_within(worker: BlockWorker, seconds: float) -> bool:
        # __del__ is what Ray calls when it drops the worker; it runs in a thread here so that a hang fails.
        done = threading.Event()
        threading.Thread(target=lambda: (worker.__del__(), done.set()), daemon=True).start()
        return done.wait(seconds)

    # A backend whose connections never close: the worker gives up after CLOSE_SECONDS.
    monkeypatch.setattr(ray_worker, "CLOSE_SECONDS", 0.3)
    stuck = BlockWorker(job(tmp_path, fake_server))

    async def never() -> None:
        await asyncio.Event().wait()

    stuck.backend.aclose = never
    assert dropped_within(stuck, 5.0)
    # A worker dropped as its process ends, when the loop's thread no longer runs (Ray's worker exit).
    ended = BlockWorker(job(tmp_path, fake_server))
    ended.wait(ended.backend.aclose())
    ended.loop.call_soon_threadsafe(ended.loop.stop)
    ended.thread.join(5.0)
    assert not ended.thread.is_alive()
    assert dropped_within(ended, 5.0)


def test_writer_names_are_valid_shard_names_and_caches_stay_on_one_host(tmp_path):
    name = writer_name("ray18c3f2a9abc", "en/fdcf778cd1d8/domain_qa/easy")
    assert StageStore(tmp_path, "s").for_writer(name).units_path.name == f"units-{name}.jsonl"
    assert writer_name("p", "a") == writer_name("p", "a") != writer_name("p", "b")
    assert cache_file("/run/cache.sqlite", "node1", "node1").name == "cache.sqlite"
    assert cache_file("/run/cache.sqlite", None, None).name == "cache.sqlite"
    other = cache_file("/run/cache.sqlite", "node1", "abcdef0123456789")
    assert other.parent.name == "run" and other.name == "cache-node-abcdef012345.sqlite"
    # On a cluster, by default: every node's own disk, the same file for the same run, another for another.
    local = cache_file("/shared/runs/big/cache.sqlite", "node1", "node1", on_node=True)
    assert local.is_relative_to(tempfile.gettempdir()) and local.suffix == ".sqlite"
    assert local == cache_file("/shared/runs/big/cache.sqlite", "node1", "node2", on_node=True)
    assert local != cache_file("/shared/runs/other/cache.sqlite", "node1", "node1", on_node=True)


def test_staged_blocks_hold_block_size_lines_and_go_away(tmp_path):
    # Model text with a split emoji, and with characters str.splitlines() (so Ray's read_text) breaks at.
    texts = ["\ud83d broken emoji", "line\u2028separator", "para\u2029graph", "next\x85line", "plain"]
    staged = BlockFiles(tmp_path / ".ray-x", block_size=3)
    for i in range(7):
        staged.add({"id": f"r{i}", "text": texts[i % len(texts)]}, f"h{i}")
    paths = staged.close()
    lines = [p.read_text(encoding="utf-8").splitlines() for p in paths]
    assert [len(block) for block in lines] == [3, 3, 1]
    read = [json.loads(line) for block in lines for line in block]
    assert [item["record"]["text"] for item in read] == [texts[i % len(texts)] for i in range(7)]
    assert read[0]["hash"] == "h0"
    staged.remove()
    assert not (tmp_path / ".ray-x").exists()


def test_a_worker_counts_failures_in_a_row_across_its_blocks(tmp_path, fake_server):
    # Blocks smaller than the streak that means "down": each block alone never reaches it.
    worker = BlockWorker(job(tmp_path, fake_server, retries=0, outage_after=32))
    fake_server.fail_rate, fake_server.fail_kinds = 1.0, ("500",)
    blocks = [items(40)[i:i + 10] for i in range(0, 40, 10)]
    try:
        for block in blocks[:3]:
            rows = worker.wait(worker.block(block))
            assert all(rows["transient"]) and all(rows["failed"]) and all("http 500" in e for e in rows["error"])
        assert "32 requests in a row failed" in worker.wait(worker.block(blocks[3]))["stop"][-1]
        # Once it has seen the outage, the worker sends nothing more, in any block, until the driver closes
        # the job: the next block ends at once with its stop row.
        time.sleep(0.5)  # the requests block 4 had in flight when it stopped reach the server
        sent = fake_server.request_count
        rows = worker.wait(worker.block(items(50)[40:]))
        assert fake_server.request_count == sent and rows["input_id"] == [""] and "seems down" in rows["stop"][0]
    finally:
        fake_server.fail_rate = 0.0
        del worker


def rows(*transient: bool) -> dict[str, list]:
    n = len(transient)
    return {"input_id": [f"r{i}" for i in range(n)], "records": [0 if t else 2 for t in transient],
            "rejections": [0] * n, "failed": list(transient), "transient": list(transient),
            "error": ["http 500" if t else "" for t in transient], "resumed": [False] * n, "requests": [1] * n,
            "cached": [0] * n, "retries": [0] * n, "request_failures": [int(t) for t in transient],
            "prompt_tokens": [5] * n, "completion_tokens": [0 if t else 7 for t in transient], "stop": [""] * n}


def test_the_driver_counts_failures_in_a_row_over_every_workers_rows():
    outcome, progress = StageOutcome("echo"), StageProgress("echo", 100)
    breaker = OutageBreaker(32, "http://gpu1:8000/v1")
    # Rows of many workers' blocks, none of which alone holds a long streak.
    count_rows(rows(True, True, False, True), outcome, progress, breaker)
    for _ in range(3):
        count_rows(rows(*[True] * 10), outcome, progress, breaker)
    assert breaker.streak == 31 and progress.done == 34
    assert outcome.records == 2 and outcome.failures == 33 and outcome.usage.completion_tokens == 7
    assert outcome.usage.requests == 34 and outcome.usage.failures == 33 and progress.failures == 33
    with pytest.raises(BackendUnavailable, match="32 requests in a row failed at http://gpu1:8000/v1 .*seems down"):
        count_rows(rows(True, True), outcome, progress, breaker)


def test_every_staged_input_must_have_its_unit(tmp_path):
    store = RunDirectory(tmp_path).stage("echo")
    store.open()
    store.append({"input_id": "a", "input_hash": "ha", "records": [], "rejections": []})
    store.append({"input_id": "b", "input_hash": "old", "records": [], "rejections": []})
    store.close()
    check_every_input_has_a_unit(store, {"a": "ha"})
    for inputs in ({"a": "ha", "c": "hc"}, {"b": "new"}):
        with pytest.raises(RunStoreError) as info:
            check_every_input_has_a_unit(store, inputs)
        assert "\n" not in str(info.value) and "filesystem every Ray node sees" in str(info.value)


def test_workers_share_the_servers_concurrency_and_rate_limits():
    one = OpenAISettings(base_url="http://a:8000/v1", model="m", concurrency=64, requests_per_minute=600,
                         tokens_per_minute=90_000)
    spread = shape(one, cpus=32.0)
    assert spread.workers == 32 and spread.settings.concurrency == 2 and spread.window == 4
    # Each worker gets its share of the client-side limits, so all of them together keep to the setting.
    assert spread.settings.requests_per_minute == pytest.approx(600 / 32)
    assert spread.settings.tokens_per_minute == pytest.approx(90_000 / 32)
    assert spread.outage_after == 128  # what is in flight at once, as the local executor counts it
    # Three replicas take three times a worker's share at once: the window covers all of them.
    three = one.model_copy(update={"base_url": ["http://a:8000/v1", "http://b:8000/v1", "http://c:8000/v1"]})
    assert shape(three, cpus=32.0).window == 12
    assert shape(one.model_copy(update={"requests_per_minute": None}), cpus=2.0, workers=4).settings.requests_per_minute is None
    assert shape(one, cpus=2.0).block_size(100_000) == 8 * 64 and shape(one, cpus=2.0).block_size(100) == 64
    assert shape(one, cpus=2.0).block_size(100, given=7) == 7


def test_a_worker_writes_its_cache_after_every_block(tmp_path, fake_server):
    cache_path = tmp_path / "cache.sqlite"
    worker = BlockWorker(job(tmp_path, fake_server, cache_path=str(cache_path)))
    try:
        worker.wait(worker.block(items(4)))
        # Read by another connection while the worker lives on: nothing waits for Ray to drop it.
        count = sqlite3.connect(cache_path).execute("SELECT COUNT(*) FROM completions").fetchone()[0]
        assert count == 4
    finally:
        del worker


def test_worker_errors_reach_the_command_as_one_plain_line():
    wrapped = RuntimeError("ray.exceptions.RayTaskError(UserCodeException): long traceback\n  File ...")
    wrapped.__cause__ = BackendUnavailable("server down; rerun to resume")
    plain = _plain(wrapped)
    assert type(plain) is BackendUnavailable and str(plain) == "server down; rerun to resume"
    other = _plain(ValueError("actor died\nmore lines"))
    assert isinstance(other, BackendUnavailable) and "actor died" in str(other) and "\n" not in str(other)
    # What Ray Data 2.60 raises when a worker's call fails: no cause, the worker's traceback as text.
    UserCodeException = pytest.importorskip("ray.exceptions").UserCodeException
    text = ("\x1b[36mray::MapWorker(MapBatches(BlockWorker)).submit()\x1b[39m (pid=9832, ip=192.0.2.2)\n"
            '  File "/work/src/condor/run/ray_worker.py", line 174, in _run\n    raise outage\n'
            "condor.llm.base.BackendUnavailable: 32 requests in a row failed at http://gpu1:8000/v1 (last error: "
            "http 500); the server seems down.\n\nThe above exception was the direct cause of the following "
            "exception:\n\nray.exceptions.UserCodeException: UDF failed to process a data block.")
    plain = _plain(UserCodeException(text))
    assert type(plain) is BackendUnavailable and str(plain).startswith("32 requests in a row failed at http://gpu1")
    assert str(plain).endswith("the server seems down.")
    # What a worker hands back as a stop row comes back as its own kind, message whole.
    for error in (RunStoreError("cannot write to /x/units.jsonl: disk full"), ConfigError("bad: value"),
                  BackendUnavailable("down")):
        again = stop_error(stop_text(error))
        assert type(again) is type(error) and str(again) == str(error)
    unknown = stop_error("KeyError: 'x'")
    assert isinstance(unknown, BackendUnavailable) and "KeyError: 'x'" in str(unknown)


def test_writers_in_two_connections_never_block_each_other(tmp_path):
    path = tmp_path / "cache.sqlite"
    slow = RequestCache(path, commit_every=1000, commit_seconds=3600)  # a batch waiting for its commit
    slow.put("a", Completion(text="from the first writer"))
    other = RequestCache(path)
    other.put("b", Completion(text="from the second writer"))
    other.flush()
    assert other.errors == 0, "the second writer had to wait for the first one's open batch"
    assert slow.get("a").text == "from the first writer"  # a waiting entry is read back before its commit
    slow.close()
    other.close()
    rows = sqlite3.connect(path).execute("SELECT key FROM completions ORDER BY key").fetchall()
    assert rows == [("a",), ("b",)]
