"""Many servers as one backend (llm/replicas.py), through real HTTP: several local test servers on 127.0.0.1.

Load spread and failover are measured from the servers' own request logs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from condor.cli.main import app
from condor.config import ConfigError, OpenAISettings, load_config
from condor.llm.base import BackendUnavailable, ChatRequest
from condor.llm.registry import build_backend
from condor.llm.replicas import STRIKES, ReplicaBackend
from fake_server import FakeChatServer


def ask(text: str, **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def servers():
    started = [FakeChatServer(latency=0.01).start() for _ in range(3)]
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def replica_set(urls, **settings) -> ReplicaBackend:
    options = dict(model="fake-model", concurrency=4, max_retries=4, timeout=10.0, replica_cooldown=30.0)
    options.update(settings)
    config = OpenAISettings(base_url=list(urls), **options)
    backend = build_backend(config)
    assert isinstance(backend, ReplicaBackend)
    # Tiny retry backoff, for the inner backends too, so failover tests stay fast.
    for replica in backend.replicas:
        replica.backend.backoff_base = 0.01
    backend.backoff_base = 0.01
    return backend


# ------------------------------------------------------------------------------------ settings


def test_a_list_of_addresses_is_validated_and_a_single_one_is_a_plain_server():
    urls = ["http://a:8000/v1/", "http://b:8000/v1"]
    config = OpenAISettings(base_url=urls, model="m")
    assert config.base_url == ["http://a:8000/v1", "http://b:8000/v1"] and config.urls() == config.base_url
    single = OpenAISettings(base_url=["http://a:8000/v1"], model="m")
    assert single.base_url == "http://a:8000/v1"
    assert type(build_backend(single)).__name__ == "OpenAIBackend"
    for bad, message in [([], "empty list"), (["http://a/v1", "http://a/v1/"], "more than once"),
                         (["http://a/v1", "http://u:p@b/v1"], "credentials"), (["http://a/v1", "ftp://b"], "http://")]:
        with pytest.raises(ValueError, match=message):
            OpenAISettings(base_url=bad, model="m")


def test_config_file_takes_a_list(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("llm:\n  base_url: [http://a:1/v1, http://b:2/v1]\n  model: m\n  replica_cooldown: 5\n")
    cfg = load_config(path)
    assert cfg.llm.backend == "openai" and cfg.llm.urls() == ["http://a:1/v1", "http://b:2/v1"]
    path.write_text("llm:\n  base_url: [http://a:1/v1, http://a:1/v1]\n  model: m\n")
    with pytest.raises(ConfigError, match="llm.base_url.*more than once"):
        load_config(path)


def test_replica_settings_travel_like_ray_ships_them():
    import pickle

    config = OpenAISettings(base_url=["http://a:1/v1", "http://b:2/v1"], model="m", replica_cooldown=3)
    backend = build_backend(pickle.loads(pickle.dumps(config)))
    assert isinstance(backend, ReplicaBackend) and backend.cooldown == 3
    assert [r.url for r in backend.replicas] == ["http://a:1/v1", "http://b:2/v1"]
    assert backend.identity == "openai:m" and backend.concurrency == 2 * config.concurrency


async def test_cached_answers_and_record_models_survive_the_list_shrinking_to_one_address(servers, tmp_path):
    from condor.llm.cache import RequestCache

    questions = [ask(f"q{i}") for i in range(20)]
    two = build_backend(OpenAISettings(base_url=[servers[0].base_url, servers[1].base_url], model="fake-model"),
                        cache=RequestCache(tmp_path / "cache.sqlite"))
    async with two:
        await two.check()
        first = await two.generate(questions)
    sent = sum(s.request_count for s in servers)
    # A GPU died: the run goes on against the one replica left, then against a server that moved.
    for url in (servers[0].base_url, servers[2].base_url):
        one = build_backend(OpenAISettings(base_url=url, model="fake-model"), cache=RequestCache(tmp_path / "cache.sqlite"))
        assert one.identity == two.identity == "openai:fake-model"
        async with one:
            await one.check()
            again = await one.generate(questions)
        assert [c.text for c in again] == [c.text for c in first] and all(c.cached for c in again)
    assert sum(s.request_count for s in servers) == sent  # every answer came from the cache


# ------------------------------------------------------------------------------------ spreading load


async def test_load_spreads_over_equal_replicas(servers):
    backend = replica_set([s.base_url for s in servers])
    async with backend:
        await backend.check()
        completions = await backend.generate([ask(f"q{i}") for i in range(300)])
    assert all(c.ok for c in completions)
    assert [c.text for c in completions[:3]] == ["Echo: q0", "Echo: q1", "Echo: q2"]
    counts = [s.request_count for s in servers]
    assert sum(counts) == 300
    assert min(counts) >= 80, counts  # a third each, give or take


async def test_a_slow_replica_gets_less_work_than_round_robin_would_give_it(servers):
    servers[0].latency = 0.15  # fifteen times slower than the other two
    backend = replica_set([s.base_url for s in servers])
    async with backend:
        await backend.check()
        completions = await backend.generate([ask(f"q{i}") for i in range(300)])
    assert all(c.ok for c in completions)
    slow, *fast = [s.request_count for s in servers]
    # Round robin would send it 100 of 300; least outstanding requests sends it a small share.
    assert slow < 40 and min(fast) > 110, (slow, fast)


async def test_a_waiting_schema_request_never_holds_back_a_plain_one_a_free_replica_can_take():
    schema = {"type": "object", "properties": {"ok": {"type": "string"}}, "required": ["ok"]}
    obeys = FakeChatServer(dialect="vllm", latency=1.0).start()
    ignores = FakeChatServer(dialect="vllm", reads=()).start()  # takes no schemas
    try:
        backend = replica_set([obeys.base_url, ignores.base_url], concurrency=1)
        async with backend:
            await backend.check()
            shaped = asyncio.ensure_future(backend.generate([ask(f"s{i}", json_schema=schema) for i in range(3)]))
            while obeys.request_count == 0:
                await asyncio.sleep(0.01)  # the first is with the replica that takes schemas; two wait for it
            plain = await backend.generate([ask(f"p{i}") for i in range(4)])
            # The plain requests went to the free replica at once, not after the schema requests ahead.
            assert all(c.ok for c in plain) and ignores.request_count == 4 and obeys.request_count == 1
            assert all(c.ok for c in await shaped) and obeys.request_count == 3
    finally:
        obeys.stop()
        ignores.stop()


async def test_schema_requests_go_only_to_replicas_that_take_schemas():
    schema = {"type": "object", "properties": {"ok": {"type": "string"}}, "required": ["ok"]}
    obeys = FakeChatServer(dialect="vllm").start()
    ignores = FakeChatServer(dialect="vllm", reads=()).start()  # drops every schema field: no dialect works
    try:
        backend = replica_set([obeys.base_url, ignores.base_url])
        async with backend:
            await backend.check()
            dialects = {r["base_url"]: r["structured_dialect"] for r in backend.describe()["replicas"]}
            assert dialects == {obeys.base_url: "openai", ignores.base_url: "none"}
            assert not backend.capabilities.structured  # the ladder asks for no schemas while one replica ignores them
            completions = await backend.generate([ask(f"q{i}", json_schema=schema) for i in range(30)])
            assert all(c.ok for c in completions) and ignores.request_count == 0 and obeys.request_count == 30
            await asyncio.to_thread(obeys.stop)
            for replica in backend.replicas[:1]:
                backend._take_out(replica, "stopped for the test")
            [failed] = await backend.generate([ask("q", json_schema=schema)])
        assert not failed.ok and "not sent: structured output is off" in failed.error and ignores.request_count == 0
    finally:
        obeys.stop()
        ignores.stop()


# ------------------------------------------------------------------------------------ failures


async def test_a_replica_stopped_mid_run_is_taken_out_and_nothing_is_lost(servers):
    backend = replica_set([s.base_url for s in servers])
    async with backend:
        await backend.check()
        run = asyncio.ensure_future(backend.generate([ask(f"q{i}") for i in range(400)]))
        while servers[1].request_count < 30:
            await asyncio.sleep(0.005)
        await asyncio.to_thread(servers[1].stop)
        stopped_at = servers[1].request_count
        completions = await run
    assert all(c.ok for c in completions), [c.error for c in completions if not c.ok][:3]
    assert [c.text for c in completions] == [f"Echo: q{i}" for i in range(400)]
    assert servers[1].request_count == stopped_at
    assert servers[0].request_count + servers[2].request_count + stopped_at >= 400
    state = {r["base_url"]: r for r in backend.describe()["replicas"]}
    assert state[servers[1].base_url]["state"] == "out" and state[servers[1].base_url]["ejections"] == 1
    assert state[servers[0].base_url]["state"] == "live"


async def test_a_replica_answering_500_is_taken_out_then_checked_and_used_again(servers):
    backend = replica_set([s.base_url for s in servers], replica_cooldown=0.3)
    async with backend:
        await backend.check()
        servers[2].fail_rate, servers[2].fail_kinds = 1.0, ("500",)
        completions = await backend.generate([ask(f"q{i}") for i in range(200)])
        assert all(c.ok for c in completions)
        assert servers[2].faults_served["500"] >= STRIKES
        [bad] = [r for r in backend.describe()["replicas"] if r["base_url"] == servers[2].base_url]
        assert bad["state"] == "out" and "http 500" in bad["last_error"]
        # The server recovers; after its cooldown the replica passes its check and gets work again.
        servers[2].fail_rate = 0.0
        servers[2].reset_stats()
        await asyncio.sleep(0.4)
        completions = await backend.generate([ask(f"again {i}") for i in range(90)])
    assert all(c.ok for c in completions)
    assert servers[2].request_count >= 20
    [back] = [r for r in backend.describe()["replicas"] if r["base_url"] == servers[2].base_url]
    assert back["state"] == "live"


async def test_requests_stuck_on_a_replica_that_is_taken_out_go_to_the_others(servers):
    # The first request to server 1 hangs for 30 s; every later one gets a 500, so the replica is
    # taken out within a second, and the hanging request must be resent elsewhere at once.
    servers[1].hang_seconds = 30.0
    servers[1].queue_faults("timeout")
    servers[1].fail_rate, servers[1].fail_kinds = 1.0, ("500",)
    backend = replica_set([s.base_url for s in servers], timeout=60.0)
    started = time.monotonic()
    async with backend:
        await backend.check()
        completions = await backend.generate([ask(f"q{i}") for i in range(60)])
    assert all(c.ok for c in completions)
    assert time.monotonic() - started < 10
    assert servers[1].faults_served["timeout"] == 1


async def test_a_replica_down_at_start_is_left_out_then_joins_when_it_comes_up():
    port = free_port()
    up = FakeChatServer().start()
    late = FakeChatServer(port=port)
    try:
        backend = replica_set([up.base_url, f"http://127.0.0.1:{port}/v1"], replica_cooldown=0.2)
        async with backend:
            await backend.check()
            assert any("failed its start-up check" in w for w in backend.warnings)
            assert all(c.ok for c in await backend.generate([ask(f"q{i}") for i in range(20)]))
            assert up.request_count == 20
            late.start()
            await asyncio.sleep(0.3)
            assert all(c.ok for c in await backend.generate([ask(f"r{i}") for i in range(40)]))
        assert late.request_count > 0
    finally:
        up.stop()
        late.stop()


async def test_no_replica_answering_at_start_is_one_clear_error():
    backend = replica_set([f"http://127.0.0.1:{free_port()}/v1", f"http://127.0.0.1:{free_port()}/v1"])
    async with backend:
        with pytest.raises(BackendUnavailable, match="none of the 2 replicas answered; cannot reach"):
            await backend.check()


async def test_every_replica_out_fails_requests_as_an_outage(servers):
    backend = replica_set([s.base_url for s in servers[:2]], max_retries=2, replica_cooldown=0.05)
    async with backend:
        await backend.check()
        for server in servers[:2]:
            await asyncio.to_thread(server.stop)
        completions = await backend.generate([ask(f"q{i}") for i in range(10)])
    assert all(not c.ok and c.transient for c in completions)
    # Each failed check doubles the time out: 0.05 s, then 0.1 s, ...
    assert any("is out for 0.05s" in w for w in backend.warnings) and any("is out for 0.1s" in w for w in backend.warnings)
    for completion in completions:
        assert "2 of 2 replicas out; gave up after 2 retries" in completion.error
        assert "connection error" in completion.error or "cannot reach" in completion.error


async def test_a_429_is_no_strike(servers):
    servers[0].fail_rate, servers[0].fail_kinds = 0.5, ("429",)
    backend = replica_set([s.base_url for s in servers[:2]])
    async with backend:
        await backend.check()
        completions = await backend.generate([ask(f"q{i}") for i in range(100)])
    assert all(c.ok for c in completions)
    assert servers[0].faults_served["429"] > 5
    assert all(r["state"] == "live" and r["ejections"] == 0 for r in backend.describe()["replicas"])


# ------------------------------------------------------------------------------------ through the CLI


def test_run_over_replicas_names_the_model_not_the_replica_and_records_the_replicas(tmp_path, servers):
    from condor_responder import respond

    for server in servers:
        server.responder = respond
    out = tmp_path / "out"
    args = ["run", "-o", str(out), "--leaves", "3", "--tasks", "domain_qa,view", "--rounds", "1",
            "--model", "fake-model", "--quiet"]
    for server in servers:
        args += ["--base-url", server.base_url]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    counts = [s.request_count for s in servers]
    assert min(counts) > 0, counts
    rows = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    assert rows and all(set(r["meta"]["models"].values()) == {"openai:fake-model"} for r in rows)
    manifest = json.loads((out / "manifest.json").read_text())
    replicas = manifest["stages"]["answer"]["backend"]["replicas"]
    assert sorted(r["base_url"] for r in replicas) == sorted(s.base_url for s in servers)
    assert manifest["config"]["llm"]["base_url"] == [s.base_url for s in servers]
    # The cache key does not depend on which replica answered: a rerun with the replicas in another
    # order asks nothing.
    before = sum(s.request_count for s in servers)
    rerun = ["run", "-o", str(out), "--leaves", "3", "--tasks", "domain_qa,view", "--rounds", "1",
             "--model", "fake-model", "--quiet", "--retry-failed"]
    for server in reversed(servers):
        rerun += ["--base-url", server.base_url]
    result = CliRunner().invoke(app, rerun)
    assert result.exit_code == 0, result.output
    assert sum(s.request_count for s in servers) == before


def test_all_replicas_stopping_mid_run_stops_the_run_like_one_server_down(tmp_path, servers):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"question {i}"}) + "\n" for i in range(400)))
    for server in servers[:2]:
        server.latency = 0.05
    config = tmp_path / "c.yaml"
    config.write_text("llm:\n  max_retries: 1\n  replica_cooldown: 0.05\n  concurrency: 4\n")
    args = ["generate", str(prompts), "-o", str(tmp_path / "out"), "--model", "fake-model", "--quiet",
            "-c", str(config), "--base-url", servers[0].base_url, "--base-url", servers[1].base_url]

    def stop_later():
        while servers[0].request_count + servers[1].request_count < 40:
            time.sleep(0.005)
        servers[0].stop()
        servers[1].stop()

    import threading

    stopper = threading.Thread(target=stop_later)
    stopper.start()
    result = CliRunner().invoke(app, args)
    stopper.join()
    assert result.exit_code == 2, result.output
    assert "the server seems down" in result.output and "Traceback" not in result.output
    done = [json.loads(line) for line in Path(tmp_path / "out/stages/generate/units.jsonl").read_text().splitlines()]
    assert sum(1 for unit in done if not unit.get("error")) >= 30


@pytest.mark.slow
@pytest.mark.ray
def test_ray_workers_spread_over_the_replicas_too(tmp_path, servers):
    """Ray workers build their backends from the settings, so they get the replica set as well."""
    pytest.importorskip("ray")
    import subprocess
    import sys

    from condor_responder import respond

    for server in servers[:2]:
        server.responder = respond
    config = tmp_path / "c.yaml"
    config.write_text("pipeline:\n  relevance: lexical\nray:\n  num_cpus: 2\n")
    command = [sys.executable, "-m", "condor.cli.main", "void", "-o", str(tmp_path / "out"), "-c", str(config),
               "--executor", "ray", "--leaves", "2", "--tasks", "domain_qa,view", "--model", "fake-model", "--quiet",
               "--base-url", servers[0].base_url, "--base-url", servers[1].base_url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert servers[0].request_count > 0 and servers[1].request_count > 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "void.jsonl").read_text().splitlines()]
    assert rows and all(r["meta"]["models"]["answerer"] == "openai:fake-model" for r in rows)
