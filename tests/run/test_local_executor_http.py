"""The local executor through the real aiohttp client and the local HTTP server: the recovery ladder,
cross-record batching for backends that batch natively, capabilities instead of names."""

from __future__ import annotations

import json

from condor.llm.base import Capabilities, ChatRequest
from condor.llm.openai import OpenAIBackend
from condor.run.local import StageRunner
from condor.run.recovery import RecoveryPolicy
from condor.run.directory import RunDirectory
from condor.stages.base import ParseError, Stage


class TagStage(Stage):
    """Asks the model to repeat a record's text; keeps only replies of the form 'OK:<text>' or JSON {"ok": ...}."""

    name = "tag"
    role = "answerer"
    has_schema = True

    def requests(self, record, *, structured=False):
        schema = {"type": "object", "properties": {"ok": {"type": "string"}}, "required": ["ok"]}
        return [ChatRequest(messages=[{"role": "user", "content": f"say {record['text']}"}],
                            json_schema=schema if structured else None, max_tokens=16)]

    def parse(self, record, completions, *, structured=False):
        text = completions[0].text or ""
        if structured:
            try:
                return [{**record, "answer": json.loads(text)["ok"], "via": "schema"}]
            except (ValueError, KeyError, TypeError):
                raise ParseError("bad_json", text[:40]) from None
        if not text.startswith("OK:"):
            raise ParseError("bad_prefix", text[:40])
        return [{**record, "answer": text[3:], "via": "text"}]

    def repair_requests(self, record, completions, error):
        return [ChatRequest(messages=[{"role": "user", "content": f"REPAIR say {record['text']}"}], max_tokens=16)]


def records(n):
    return [{"id": f"r{i:03d}", "text": f"t{i}"} for i in range(n)]


def backend_for(server, **kw):
    return OpenAIBackend(server.base_url, "fake-model", backoff_base=0.01, **kw)


async def test_the_ladder_climbs_repair_then_schema_over_http(tmp_path, fake_server):
    def model(body):
        prompt = body["messages"][-1]["content"]
        if body.get("response_format"):
            return json.dumps({"ok": "schema"}) if "t1" in prompt else "{broken"
        if prompt == "REPAIR say t0":
            return "OK:repaired"
        return "I am not following the format"

    fake_server.responder = model
    store = RunDirectory(tmp_path).stage("tag")
    async with backend_for(fake_server) as backend:
        outcome = await StageRunner(TagStage(), backend, store).run(records(3), total=3)
    by_id = {r["id"]: r for r in store.iter_records()}
    assert by_id["r000"]["answer"] == "repaired" and by_id["r000"]["usage"]["tag"]["attempts"] == ["text", "repair"]
    assert by_id["r001"]["via"] == "schema" and by_id["r001"]["usage"]["tag"]["attempts"] == ["text", "repair", "schema"]
    (rejection,) = store.iter_rejections()
    assert rejection["record"]["id"] == "r002" and [o["attempt"] for o in rejection["outputs"]] == ["text", "repair", "schema"]
    assert outcome.records == 2 and outcome.rejections == 1
    # Every attempt went over HTTP: 3 first attempts, 3 repairs, 2 schema fallbacks (r000 was repaired).
    assert fake_server.request_count == 8


async def test_a_schema_first_backend_resamples_instead_of_repairing(tmp_path, fake_server):
    seen = []

    def model(body):
        seen.append(body)
        first = len([b for b in seen if b["messages"] == body["messages"]]) == 1
        return "{cut off" if first else json.dumps({"ok": "second"})

    fake_server.responder = model

    class GrammarServer(OpenAIBackend):
        capabilities = Capabilities(structured=True, schema_first=True)

    store = RunDirectory(tmp_path).stage("tag")
    async with GrammarServer(fake_server.base_url, "fake-model", backoff_base=0.01, seed=5) as backend:
        await StageRunner(TagStage(), backend, store).run(records(2), total=2)
    kept = list(store.iter_records())
    assert [r["answer"] for r in kept] == ["second", "second"]
    assert all(r["usage"]["tag"]["attempts"] == ["schema", "schema-resample"] for r in kept)
    assert all(body.get("response_format") for body in seen)
    # The resample is a distinct request (another sample index gives another seed), not a cache hit.
    assert sorted(body["seed"] for body in seen) == [5, 5, 6, 6]


async def test_a_natively_batching_backend_gets_requests_of_many_records_per_call(tmp_path, fake_server):
    fake_server.responder = lambda body: "OK:" + body["messages"][-1]["content"][4:]
    sizes: list[int] = []

    class BatchingEngine(OpenAIBackend):
        """An in-process engine stand-in: one generate call serves a whole batch (sent here over HTTP)."""

        capabilities = Capabilities(structured=True, native_batching=True, max_batch=8)

        async def generate(self, requests):
            sizes.append(len(requests))
            return await super().generate(requests)

    store = RunDirectory(tmp_path).stage("tag")
    async with BatchingEngine(fake_server.base_url, "fake-model", concurrency=8, backoff_base=0.01) as backend:
        runner = StageRunner(TagStage(), backend, store)
        outcome = await runner.run(records(40), total=40)
    assert outcome.records == 40 and sorted(r["answer"] for r in store.iter_records()) == sorted(f"t{i}" for i in range(40))
    assert sum(sizes) == 40 and max(sizes) == 8 and len(sizes) <= 8  # batches across records, never above max_batch
    assert runner.batcher is not None and runner.batcher.batch_sizes == sizes


async def test_a_backend_without_native_batching_is_called_per_record(tmp_path, fake_server):
    fake_server.responder = lambda body: "OK:x"
    sizes: list[int] = []

    class Counting(OpenAIBackend):
        async def generate(self, requests):
            sizes.append(len(requests))
            return await super().generate(requests)

    async with Counting(fake_server.base_url, "fake-model", concurrency=8, backoff_base=0.01) as backend:
        runner = StageRunner(TagStage(), backend, RunDirectory(tmp_path).stage("tag"))
        await runner.run(records(20), total=20)
    assert sizes == [1] * 20 and runner.batcher is None


def test_the_policy_reads_capabilities_not_names():
    stage = TagStage()
    grammar = Capabilities(structured=True, schema_first=True)
    server = Capabilities(structured=True)
    assert RecoveryPolicy("auto", grammar).schema_first(stage)
    assert not RecoveryPolicy("auto", server).schema_first(stage)
    assert RecoveryPolicy("on", server).schema_first(stage)
    assert not RecoveryPolicy("off", grammar).schema_first(stage)
    assert RecoveryPolicy("auto", server).rungs(stage, False) == ["repair", "schema"]
    assert RecoveryPolicy("off", server).rungs(stage, False) == ["repair"]
    assert RecoveryPolicy("auto", Capabilities()).rungs(stage, False) == ["repair"]
    assert RecoveryPolicy("auto", grammar).rungs(stage, True) == ["schema-resample"]
