"""The local executor: resume, repair then schema fallback, failures and bugs recorded, provenance."""

import asyncio

import pytest

from scripted_backend import ScriptedBackend

from condor.llm.base import ChatRequest, Completion
from condor.run.local import StageRunner
from condor.run.directory import RunDirectory
from condor.stages.base import ParseError, Stage


class UpperStage(Stage):
    """Asks for a word; accepts only answers starting with 'OK:'."""

    name = "upper"
    version = "7"
    role = "answerer"
    has_schema = True

    def requests(self, record, *, structured=False):
        return [ChatRequest(messages=[{"role": "user", "content": record["text"]}],
                            json_schema={"type": "object"} if structured else None)]

    def parse(self, record, completions, *, structured=False):
        text = completions[0].text
        if record.get("explode"):
            raise KeyError("bug in stage")
        if not text.startswith("OK:"):
            raise ParseError("bad_prefix", text[:20])
        return [{**record, "answer": text[3:]}]

    def repair_requests(self, record, completions, error):
        return [ChatRequest(messages=[{"role": "user", "content": "REPAIR " + record["text"]}])]


def records(n):
    return [{"id": f"r{i}", "text": f"t{i}"} for i in range(n)]


async def run(tmp_path, backend, inputs, **kw):
    store = RunDirectory(tmp_path).stage("upper")
    runner = StageRunner(UpperStage(), backend, store, **kw)
    outcome = await runner.run(inputs, total=len(inputs))
    return store, outcome


async def test_all_records_processed_with_provenance(tmp_path):
    backend = ScriptedBackend(lambda r: "OK:" + r.messages[0]["content"])
    store, outcome = await run(tmp_path, backend, records(50))
    assert outcome.records == 50 and outcome.rejections == 0
    out = list(store.iter_records())
    assert sorted(r["id"] for r in out) == sorted(f"r{i}" for i in range(50))
    assert out[0]["models"] == {"answerer": "scripted:test"}
    assert out[0]["templates"] == {"upper": "7"}
    assert out[0]["usage"]["upper"]["attempts"] == ["text"]


async def test_resume_skips_done_inputs_and_makes_no_calls(tmp_path):
    backend = ScriptedBackend(lambda r: "OK:x")
    await run(tmp_path, backend, records(10))
    again = ScriptedBackend(lambda r: "OK:x")
    store, outcome = await run(tmp_path, again, records(12))
    assert again.calls and len(again.calls) == 2
    assert outcome.resumed == 10
    assert len(list(store.iter_records())) == 12


async def test_repair_then_schema_fallback_then_rejection(tmp_path):
    def answer(request):
        if request.json_schema is not None:
            return "OK:schema" if "t1" in request.messages[0]["content"] else "still bad"
        if request.messages[0]["content"].startswith("REPAIR t0"):
            return "OK:repaired"
        return "nonsense"

    backend = ScriptedBackend(answer)
    store, outcome = await run(tmp_path, backend, records(3))
    by_id = {r["id"]: r for r in store.iter_records()}
    assert by_id["r0"]["answer"] == "repaired"
    assert by_id["r0"]["usage"]["upper"]["attempts"] == ["text", "repair"]
    assert by_id["r1"]["answer"] == "schema"
    assert by_id["r1"]["usage"]["upper"]["attempts"] == ["text", "repair", "schema"]
    rejections = list(store.iter_rejections())
    assert [r["record"]["id"] for r in rejections] == ["r2"]
    assert rejections[0]["reason"] == "bad_prefix"


async def test_structured_off_never_asks_for_schema(tmp_path):
    backend = ScriptedBackend(lambda r: "bad")
    store, _ = await run(tmp_path, backend, records(2), structured="off")
    assert all(c.json_schema is None for c in backend.calls)
    assert len(list(store.iter_rejections())) == 2


async def test_structured_on_asks_for_schema_first(tmp_path):
    backend = ScriptedBackend(lambda r: "OK:s" if r.json_schema else "bad")
    store, _ = await run(tmp_path, backend, records(2), structured="on")
    assert len(backend.calls) == 2 and all(c.json_schema for c in backend.calls)


async def test_backend_failure_is_recorded_and_retried_only_on_request(tmp_path):
    backend = ScriptedBackend(lambda r: Completion.failed("http 503: busy", retries=6))
    store, outcome = await run(tmp_path, backend, records(3))
    assert outcome.failures == 3
    assert [u["error"] for u in store.iter_failures()] == ["http 503: busy"] * 3
    healthy = ScriptedBackend(lambda r: "OK:y")
    store, outcome = await run(tmp_path, healthy, records(3))
    assert healthy.calls == []  # failures count as done unless retry_failed
    store, outcome = await run(tmp_path, healthy, records(3), retry_failed=True)
    assert len(healthy.calls) == 3
    assert len(list(store.iter_records())) == 3 and list(store.iter_failures()) == []


async def test_a_bug_in_a_stage_costs_one_recorded_record(tmp_path):
    backend = ScriptedBackend(lambda r: "OK:z")
    inputs = records(3)
    inputs[1]["explode"] = True
    store, outcome = await run(tmp_path, backend, inputs)
    assert outcome.records == 2
    (rejection,) = store.iter_rejections()
    assert rejection["reason"] == "internal_error" and "bug in stage" in rejection["detail"]


async def test_window_bounds_records_in_flight(tmp_path):
    in_flight = peak = 0

    class Slow(ScriptedBackend):
        async def generate(self, requests):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.001)
            in_flight -= 1
            return [Completion(text="OK:w") for _ in requests]

    await run(tmp_path, Slow(lambda r: ""), records(200), window=5)
    assert peak == 5


async def test_input_iterator_is_consumed_lazily(tmp_path):
    pulled = 0

    def stream():
        nonlocal pulled
        for record in records(1000):
            pulled += 1
            yield record

    seen_max_gap = 0
    backend = ScriptedBackend(lambda r: "OK")
    store = RunDirectory(tmp_path).stage("upper")
    runner = StageRunner(UpperStage(), backend, store, window=4)

    original = backend.generate

    async def watching(requests):
        nonlocal seen_max_gap
        seen_max_gap = max(seen_max_gap, pulled - len(backend.calls))
        return await original(requests)

    backend.generate = watching
    await runner.run(stream())
    assert seen_max_gap <= 5


async def test_schema_first_failure_draws_one_fresh_sample(tmp_path):
    def answer(request):
        if request.messages[0]["content"] == "t0":
            return "OK:second" if request.sample_index == 1 else "cut off {"
        return "never valid"

    backend = ScriptedBackend(answer)
    store, outcome = await run(tmp_path, backend, records(2), structured="on")
    (kept,) = store.iter_records()
    assert kept["answer"] == "second" and kept["usage"]["upper"]["attempts"] == ["schema", "schema-resample"]
    (rejection,) = store.iter_rejections()
    assert rejection["detail"].startswith("schema: bad_prefix; schema-resample: bad_prefix")
    assert [o["text"] for o in rejection["outputs"]] == [["never valid"], ["never valid"]]
    assert all(c.json_schema for c in backend.calls)


async def test_rejection_keeps_every_attempts_output(tmp_path):
    backend = ScriptedBackend(lambda r: "garbage " + ("json" if r.json_schema else "text"))
    store, _ = await run(tmp_path, backend, records(1))
    (rejection,) = store.iter_rejections()
    assert [o["attempt"] for o in rejection["outputs"]] == ["text", "repair", "schema"]
    assert rejection["outputs"][2]["text"] == ["garbage json"]


async def test_an_outage_stops_the_stage_and_resume_resends_transport_failures(tmp_path):
    from condor.llm.base import BackendUnavailable

    down = ScriptedBackend(lambda r: Completion.failed("connection error: refused", retries=6, transient=True),
                           concurrency=2)
    store = RunDirectory(tmp_path).stage("upper")
    runner = StageRunner(UpperStage(), down, store, outage_after=10)
    with pytest.raises(BackendUnavailable, match="10 requests in a row failed"):
        await runner.run(records(100))
    assert len(down.calls) < 30  # stopped soon after the streak, not after 100 failures
    assert len(list(store.iter_failures())) >= 10

    healthy = ScriptedBackend(lambda r: "OK:back")
    store, outcome = await run(tmp_path, healthy, records(100))
    assert len(list(store.iter_records())) == 100 and list(store.iter_failures()) == []


async def test_permanent_failures_are_not_resent_on_resume(tmp_path):
    answers = iter([Completion.failed("http 400: bad request")] + ["OK:fine"] * 10)
    backend = ScriptedBackend(lambda r: next(answers), concurrency=1)
    store = RunDirectory(tmp_path).stage("upper")
    await StageRunner(UpperStage(), backend, store, window=1).run(records(3))
    again = ScriptedBackend(lambda r: "OK:again")
    await StageRunner(UpperStage(), again, store).run(records(3))
    assert again.calls == []  # a 400 is the request's fault: only --retry-failed sends it again
