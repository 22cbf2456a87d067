"""The Ray executor's parts that need no Ray: settings, the block worker's resume, staging, errors, and a
request cache shared by two writers. (Runs on a local Ray are in test_ray_executor.py.)"""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from condor.cli.main import app
from condor.config import ConfigError, load_config
from condor.llm.base import BackendUnavailable, ChatRequest, Completion
from condor.llm.cache import RequestCache
from condor.llm.settings import OpenAISettings
from condor.run.ray import BlockFiles, _plain
from condor.run.ray_worker import BlockJob, BlockWorker, cache_file, writer_name
from condor.run.steps import ModelStep
from condor.run.store import RunDirectory, StageStore
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
    for flags in (["--executor", "spark"], ["--ray-address", "not an address"]):
        result = CliRunner().invoke(app, ["void", "-o", str(tmp_path / "out"), *flags])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output
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
        with pytest.raises(BackendUnavailable, match="seems down"):
            worker.wait(worker.block(items(10)))
    finally:
        fake_server.fail_rate = 0.0
        del worker
    assert fake_server.request_count < 10  # stopped, rather than recording every input as failed


def test_writer_names_are_valid_shard_names_and_caches_stay_on_one_host(tmp_path):
    name = writer_name("ray18c3f2a9abc", "en/fdcf778cd1d8/domain_qa/easy")
    assert StageStore(tmp_path, "s").for_writer(name).units_path.name == f"units-{name}.jsonl"
    assert writer_name("p", "a") == writer_name("p", "a") != writer_name("p", "b")
    assert cache_file("/run/cache.sqlite", "node1", "node1").name == "cache.sqlite"
    assert cache_file("/run/cache.sqlite", None, None).name == "cache.sqlite"
    other = cache_file("/run/cache.sqlite", "node1", "abcdef0123456789")
    assert other.parent.name == "run" and other.name == "cache-node-abcdef012345.sqlite"


def test_staged_blocks_hold_block_size_lines_and_go_away(tmp_path):
    staged = BlockFiles(tmp_path / ".ray-x", block_size=3)
    for i in range(7):
        staged.add({"id": f"r{i}", "text": "\ud83d broken emoji"}, f"h{i}")
    paths = staged.close()
    assert [p.read_text().count("\n") for p in paths] == [3, 3, 1]
    assert json.loads(paths[0].read_text().splitlines()[0])["hash"] == "h0"
    staged.remove()
    assert not (tmp_path / ".ray-x").exists()


def test_worker_errors_reach_the_command_as_one_plain_line():
    wrapped = RuntimeError("ray.exceptions.RayTaskError(UserCodeException): long traceback\n  File ...")
    wrapped.__cause__ = BackendUnavailable("server down; rerun to resume")
    plain = _plain(wrapped)
    assert type(plain) is BackendUnavailable and str(plain) == "server down; rerun to resume"
    other = _plain(ValueError("actor died\nmore lines"))
    assert isinstance(other, BackendUnavailable) and "actor died" in str(other) and "\n" not in str(other)


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
