"""Streaming between steps (run/flow.py) through the real local server: records move on as soon as they
are ready, and the run ends with the same records, the same per-step units and the same resume
behaviour as running the steps one after the other."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from condor_responder import respond
from fake_server import FakeChatServer

import condor
from condor.run import flow as flow_module
from condor.run.executor import Executor
from condor.run.local import LocalExecutor
from condor.run.steps import PLAN, GateStep, ModelStep
from condor.stages.base import Stage
from condor.llm.base import BackendUnavailable, ChatRequest


def kind(body: dict) -> str:
    """Which step sent a request, from its system prompt."""
    system = body["messages"][0]["content"]
    for word, name in (("You invent", "questions"), ("You are a knowledgeable", "answer"),
                       ("You review", "critique"), ("You rewrite", "refine")):
        if system.startswith(word):
            return name
    return "other"


def config(server: FakeChatServer, **pipeline):
    overrides = {"llm.base_url": server.base_url, "llm.model": "fake-model", "llm.concurrency": 4,
                 "pipeline.relevance": "lexical", "pipeline.rounds": 1}
    overrides.update({f"pipeline.{k}": v for k, v in pipeline.items()})
    return condor.load_config(None, overrides)


def units(out: Path) -> dict[str, dict[str, dict]]:
    """Every step's units by input id, without when and in which order they were written."""
    found = {}
    for shard in sorted((out / "stages").glob("*/units*.jsonl")):
        step = found.setdefault(shard.parent.name, {})
        for line in shard.read_text(encoding="utf-8").splitlines():
            unit = json.loads(line)
            step[unit["input_id"]] = {k: v for k, v in unit.items() if k not in ("seq", "at")}
    return found


def exports(out: Path) -> tuple[str, str, list[dict]]:
    rejected = sorted((json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()),
                      key=lambda r: (r["stage"], r["id"]))
    return (out / "sft.jsonl").read_text(), (out / "preference.jsonl").read_text(), rejected


def step_by_step(monkeypatch) -> None:
    """The local executor without streaming: the Executor interface's default chain."""
    monkeypatch.setattr(LocalExecutor, "run_chain", Executor.run_chain)


def duplicating(body: dict):
    """The scripted model, except that the two tasks of a leaf get the same easy question (exact
    duplicates) and hard questions one word apart (near duplicates): which of each pair is kept
    depends on id order alone."""
    prompt = body["messages"][-1]["content"]
    if "Knowledge tag:" not in prompt:
        return respond(body)
    tag = prompt.split("Knowledge tag:", 1)[1].split("\n", 1)[0].strip()
    task = prompt.split("Task type:", 1)[1].split(".", 1)[0].strip()
    questions = {
        "easy": f"What should a complete beginner know first about {tag}, and where should they start?",
        "medium": f"As someone interested in {task.lower()} work, how do two common approaches to {tag} compare "
                  f"({hash_words(prompt)})?",
        "hard": f"Design a detailed three-week plan with a budget of 300 for a club working on {tag}, weighing "
                f"the trade-offs and {'the' if task.startswith('V') else 'its'} main risks.",
    }
    if body.get("response_format"):
        return json.dumps(questions)
    return "".join(f"[{level.title()}][Question Start]{text}[Question End]\n" for level, text in questions.items())


def hash_words(text: str) -> str:
    import hashlib

    words = "amber basil cedar delta ember fjord grove heron indigo juniper kestrel lagoon".split()
    digest = hashlib.sha256(text.encode()).digest()
    return " ".join(words[b % len(words)] for b in digest[:6])


def test_the_same_records_as_step_by_step_whatever_the_arrival_order(tmp_path, monkeypatch):
    # Heavy-tailed latency scrambles the order in which replies come back; the near-duplicate gate
    # must still keep the same questions (the first in id order), and every step the same units.
    results = {}
    server = FakeChatServer(responder=duplicating, latency=0.02, latency_sigma=1.0).start()
    try:
        for mode in ("steps", "streaming"):
            with monkeypatch.context() as patch:
                if mode == "steps":
                    step_by_step(patch)
                out = tmp_path / mode
                condor.run_pipeline(config(server, leaves=6, tasks=["view", "creation"]), out)
            results[mode] = (units(out), exports(out))
            # Every step left one unit per current input: readers take them line by line, no index.
            reader = condor.read_run(out)
            assert all(reader.store(name).is_plain() and reader.current(name) is None for name in reader.steps)
    finally:
        server.stop()
    (steps_units, steps_files), (stream_units, stream_files) = results["steps"], results["streaming"]
    assert stream_files == steps_files
    assert stream_units == steps_units
    reasons = [r["reason"] for r in steps_files[2]]
    assert reasons.count("exact_duplicate") == 6 and reasons.count("near_duplicate") >= 6


def test_later_steps_start_while_an_earlier_request_is_still_out(tmp_path, fake_server):
    # The last question request to arrive takes two seconds; the others are quick. Streaming answers,
    # critiques and refines the records it does not hold up meanwhile; step by step, nothing else
    # could start before it returned.
    seen = {"questions": 0, "slow": None}

    def delay(body: dict) -> float:
        if kind(body) == "questions":
            seen["questions"] += 1
            if seen["questions"] == 8:
                seen["slow"] = body["messages"][-1]["content"]
                return 2.0
        return 0.0

    answered_before_slow: list[str] = []

    def note(body: dict):
        if body["messages"][-1]["content"] == seen["slow"]:
            answered_before_slow.extend(kind(b) for b in fake_server.request_log)
        return respond(body)

    fake_server.responder = note
    fake_server.delay = delay
    import datasketch  # noqa: F401  (the near-duplicate gate's first import takes seconds on a busy machine)

    condor.run_pipeline(config(fake_server, leaves=4, tasks=["view", "creation"]), tmp_path / "out")
    assert {k for k in answered_before_slow if k != "questions"} == {"answer", "critique", "refine"}
    assert len(fake_server.request_log) == 8 + 3 * 24


def test_a_stage_whose_ids_sort_before_its_inputs_stops_the_run(tmp_path, fake_server):
    class Renaming(Stage):
        name, role = "renaming", "answerer"

        def requests(self, record, *, structured=False):
            return [ChatRequest(messages=[{"role": "user", "content": record["id"]}])]

        def parse(self, record, completions, *, structured=False):
            # Before every plan id, and in the reverse order of the inputs.
            return [{**record, "id": "0-" + "".join(chr(0x2FFF - ord(c)) for c in record["id"])}]

    fake_server.responder = respond
    cfg = config(fake_server, leaves=3, tasks=["view"])
    cfg.llm.concurrency = 1  # one request at a time, in id order: outputs arrive in decreasing id order
    steps = [ModelStep("renaming", stage=Renaming(), reads=PLAN),
             GateStep("dedup", gates=condor.pipeline_steps(cfg)[1].gates)]
    with pytest.raises(RuntimeError, match="sort after their input's id"):
        condor.run_pipeline(cfg, tmp_path / "out", steps=steps)


def test_records_alive_in_the_chain_stay_within_the_budget(tmp_path, fake_server, monkeypatch):
    fake_server.responder = respond
    flows = []
    original = flow_module.Flow.__init__

    def small_budget(self, chain, make_runner, budget=flow_module.BUDGET):
        original(self, chain, make_runner, budget=6)
        flows.append(self)

    monkeypatch.setattr(flow_module.Flow, "__init__", small_budget)
    result = condor.run_pipeline(config(fake_server, leaves=10, tasks=["view", "creation"]), tmp_path / "out")
    assert result.export.sft == 60
    # Reading stops at the budget; a work item in flight still turns into its three questions, and the
    # question step holds at most its window (2 x concurrency 4) of them.
    assert 6 <= flows[0].peak <= 6 + 2 * 8, flows[0].peak


def test_a_run_stopped_mid_chain_resumes_from_its_units(tmp_path, fake_server):
    # The server starts refusing every request after 40 answers: the run stops (an outage) while the
    # chain is streaming. Every unit written stays; the rerun sends only what has no unit, and ends
    # with the records of an uninterrupted run.
    fake_server.responder = respond
    cfg = config(fake_server, leaves=10, tasks=["view", "creation"])
    condor.run_pipeline(cfg, tmp_path / "reference")
    sent = fake_server.request_count
    calls = {"n": 0}

    def refusing_after_40(body: dict):
        calls["n"] += 1
        return respond(body) if calls["n"] <= 40 else {"status": 401, "error": "key revoked"}

    fake_server.responder = refusing_after_40
    out = tmp_path / "out"
    with pytest.raises(BackendUnavailable):
        condor.run_pipeline(cfg, out)
    written = {path.parent.name for path in (out / "stages").glob("*/units.jsonl") if path.stat().st_size}
    assert {"questions", "answer"} <= written  # the chain had got past its first step
    assert not (out / "sft.jsonl").exists()
    fake_server.responder = respond
    before = fake_server.request_count
    condor.run_pipeline(cfg, out)
    assert (out / "sft.jsonl").read_text() == (tmp_path / "reference" / "sft.jsonl").read_text()
    # The 40 answered requests were not sent again (give or take those in flight when it stopped).
    assert fake_server.request_count - before <= sent - 40 + 4


def test_the_pending_ids_of_a_flow_node_know_their_minimum_and_do_not_pile_up():
    from condor.run.flow import Pending

    pending = Pending()
    for key in ["m", "c", "x", "c"]:
        pending.add(key)
    assert pending.low() == "c" and pending.size == 4
    assert pending.discard("c") and pending.low() == "c"
    assert pending.discard("c") and pending.low() == "m"
    assert not pending.discard("c")
    for i in range(10_000):  # a long run that never asks for the minimum
        pending.add(f"k{i:05d}")
        pending.discard(f"k{i:05d}")
    assert len(pending._heap) <= 2 * pending.size + 64
    assert pending.low() == "m" and pending.size == 2


def _recording_gate(name: str, threaded: bool, seen: dict):
    """A pass-through gate that notes the thread each batch is checked on."""
    import threading

    from condor.filters.base import Gate

    class Recording(Gate):
        ordered = chunked = False

        def check(self, record):
            return record

        def check_batch(self, records):
            seen.setdefault(name, set()).add(threading.get_ident())
            return list(records)

    gate = Recording()
    gate.name, gate.threaded = name, threaded
    return gate


def test_quick_gates_run_on_the_event_loop_and_threaded_ones_in_a_worker(tmp_path, fake_server):
    # A gate busy in Python inside a thread makes every request wait for the interpreter lock; only
    # gates that say they are threaded (an embedding model) are handed to a worker thread.
    import threading

    fake_server.responder = respond
    cfg = config(fake_server, leaves=3, tasks=["view"])
    seen: dict[str, set[int]] = {}
    added = {"answer_filter": _recording_gate("quick", False, seen), "select": _recording_gate("threaded", True, seen)}
    steps = [replace(step, gates=(*step.gates, added[step.name])) if step.name in added else step
             for step in condor.pipeline_steps(cfg)]
    loop_thread = threading.get_ident()  # run_pipeline runs its event loop on the calling thread
    condor.run_pipeline(cfg, tmp_path / "out", steps=steps)
    assert seen["quick"] == {loop_thread}
    assert loop_thread not in seen["threaded"]


def test_a_gate_that_cannot_be_built_stops_the_run_before_any_request(tmp_path, fake_server):
    from condor.filters.base import Gate

    class Unbuildable(Gate):
        name = "needs_a_model"

        def fresh(self):
            raise RuntimeError("the embedding model is not installed")

        def check(self, record):
            return record

    fake_server.responder = respond
    cfg = config(fake_server, leaves=3, tasks=["view"])
    steps = [condor.pipeline_steps(cfg)[0], GateStep("filter", gates=(Unbuildable(),))]
    with pytest.raises(RuntimeError, match="embedding model is not installed"):
        condor.run_pipeline(cfg, tmp_path / "out", steps=steps)
    assert fake_server.request_count == 0
