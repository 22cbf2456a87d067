"""The embedded backend on the real SmolLM2-135M model (llama.cpp): plain, schema-constrained, cached."""

import asyncio
import json
import time

import pytest

from condor.llm.base import BackendUnavailable, ChatRequest
from condor.llm.cache import CachedBackend, RequestCache
from condor.stages.markers import extract_json

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

llama_cpp = pytest.importorskip("llama_cpp", reason="the embedded extra is installed by `make test`")

from condor.llm.embedded import EmbeddedBackend, default_model_path  # noqa: E402


@pytest.fixture(scope="module")
def backend():
    engine = EmbeddedBackend(max_tokens=32, temperature=0.0, n_ctx=2048)
    yield engine
    asyncio.run(engine.aclose())


def ask(text, **kw):
    return ChatRequest(messages=[{"role": "user", "content": text}], **kw)


def test_model_is_found_through_package_metadata():
    path = default_model_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000


def test_plain_generation(backend):
    (out,) = asyncio.run(backend.generate([ask("Name a colour.", max_tokens=16)]))
    assert out.ok and out.text.strip()
    assert out.finish_reason in {"stop", "length"}
    assert out.prompt_tokens > 0 and 0 < out.completion_tokens <= 16


def test_schema_constrained_output_parses(backend):
    schema = {
        "type": "object",
        "properties": {"easy": {"type": "string"}, "medium": {"type": "string"}, "hard": {"type": "string"}},
        "required": ["easy", "medium", "hard"],
    }
    (out,) = asyncio.run(backend.generate([ask("Write three questions about bread.", max_tokens=160, json_schema=schema)]))
    assert out.ok
    if out.finish_reason == "stop":  # a cut-off answer cannot be complete JSON; the grammar guarantees the rest
        data = json.loads(out.text)
        assert set(data) == {"easy", "medium", "hard"}


CRITIQUE_PROMPT = ("Review this answer. Request: Explain what a cash flow statement is. Answer: It lists the cash a "
                   "company takes in and pays out in a period, split into operating, investing and financing activities.")


@pytest.fixture(scope="module")
def sampling_backend():
    engine = EmbeddedBackend(max_tokens=160, temperature=0.8, seed=11, n_ctx=2048)
    yield engine
    asyncio.run(engine.aclose())


def critiques(engine, count):
    from condor.stages.critique import SCHEMA

    requests = [ask(CRITIQUE_PROMPT, json_schema=SCHEMA, sample_index=i) for i in range(count)]
    return SCHEMA, asyncio.run(engine.generate(requests))


def test_llguidance_holds_schema_replies_within_a_small_budget(sampling_backend, monkeypatch):
    # The critique schema allows 700 characters a section, more than 160 tokens hold: the bounds are
    # fitted to the budget, so a sampled reply closes its object instead of running out mid-string.
    pytest.importorskip("llguidance", reason="the embedded extra installs it")
    from condor.llm import llama_guide
    from condor.llm.schema_budget import fit_to_budget

    calls = []
    real = llama_guide.SchemaGuide.__call__
    monkeypatch.setattr(llama_guide.SchemaGuide, "__call__", lambda self, ids, scores: calls.append(1) or real(self, ids, scores))
    schema, outs = critiques(sampling_backend, 4)
    assert calls, "the replies were not guided by llguidance"
    bound = fit_to_budget(schema, 160)["properties"]["strengths"]["maxLength"]
    whole = [out for out in outs if out.finish_reason == "stop"]
    assert len(whole) >= 3, [out.text for out in outs]
    for out in whole:
        assert out.text.startswith('{"'), out.text  # compact JSON: no whitespace for a small model to loop on
        data = json.loads(out.text)
        assert set(data) == set(schema["properties"])
        assert all(15 <= len(value) <= bound for value in data.values()), data


def test_without_llguidance_llama_cpp_grammars_hold_the_schema(monkeypatch):
    from condor.llm import embedded

    monkeypatch.setattr(embedded, "guide_tokenizer", lambda llama: None)
    engine = EmbeddedBackend(max_tokens=160, temperature=0.8, seed=11, n_ctx=2048)
    grammars = []
    try:
        real = engine._load()
        original = real.create_chat_completion
        monkeypatch.setattr(real, "create_chat_completion",
                            lambda **kw: grammars.append("response_format" in kw and "logits_processor" not in kw) or original(**kw))
        schema, outs = critiques(engine, 3)
    finally:
        asyncio.run(engine.aclose())
    assert grammars == [True, True, True], "the schema did not go to llama.cpp's grammar"
    whole = [out for out in outs if out.finish_reason == "stop"]
    assert whole, [out.text for out in outs]
    for out in whole:  # the grammar lets raw line breaks into strings; the parser reads them
        assert set(extract_json(out.text)) == set(schema["properties"])


def test_event_loop_keeps_running_during_generation(backend):
    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        started = time.monotonic()
        await backend.generate([ask("Count from one to twenty.", max_tokens=48)])
        elapsed = time.monotonic() - started
        task.cancel()
        return ticks, elapsed

    ticks, elapsed = asyncio.run(main())
    # The loop was free: it ticked for most of the generation instead of freezing.
    assert ticks >= elapsed / 0.01 * 0.3


def test_cached_rerun_makes_no_model_call(tmp_path, backend):
    async def main():
        cached = CachedBackend(backend, RequestCache(tmp_path / "c.sqlite"))
        first = await cached.generate([ask("Say hi.", max_tokens=8, seed=1)])
        calls_before = cached.cache.misses
        again = await cached.generate([ask("Say hi.", max_tokens=8, seed=1)])
        cached.cache.close()
        return first, again, calls_before, cached.cache.misses

    first, again, misses_before, misses_after = asyncio.run(main())
    assert again[0].cached and again[0].text == first[0].text and misses_after == misses_before


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackendUnavailable, match="model file not found"):
        EmbeddedBackend(tmp_path / "nope.gguf")
