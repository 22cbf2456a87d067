"""The transformers backend: model sources, and generation on the real SmolLM2-135M (batched, with schemas)."""

from __future__ import annotations

import asyncio
import json

import pytest

from condor.config import ConfigError, load_config
from condor.llm.base import BackendUnavailable, ChatRequest
from condor.llm.hf_models import resolve_source


def test_a_model_is_a_local_directory_adapter_or_gguf(tmp_path):
    assert resolve_source(None).kind == "gguf"
    with pytest.raises(BackendUnavailable, match="model not found: .*never downloaded"):
        resolve_source("HuggingFaceTB/SmolLM2-135M-Instruct")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BackendUnavailable, match="not a GGUF model"):
        resolve_source(tmp_path / "notes.txt")
    with pytest.raises(BackendUnavailable, match="holds no model"):
        resolve_source(tmp_path)
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert resolve_source(tmp_path / "hf").kind == "hf"
    (tmp_path / "ad").mkdir()
    (tmp_path / "ad" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/nowhere"}))
    assert resolve_source(tmp_path / "ad").kind == "adapter"


def test_the_kind_is_a_config_setting_with_its_own_fields():
    cfg = load_config(None, {"llm.backend": "transformers", "llm.model": "models/sft-1", "llm.batch_size": 4})
    assert cfg.llm.backend == "transformers" and cfg.llm.batch_size == 4 and cfg.llm.device == "auto"
    with pytest.raises(ConfigError, match="n_ctx"):
        load_config(None, {"llm.backend": "transformers", "llm.n_ctx": 2048})
    with pytest.raises(ConfigError, match="batch_size"):
        load_config(None, {"llm.backend": "transformers", "llm.batch_size": 0})


def test_an_adapter_without_its_base_is_one_line(tmp_path):
    from condor.llm.transformers import TransformersBackend

    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/no/such/base"}))
    with pytest.raises(BackendUnavailable, match="not on this machine: /no/such/base"):
        TransformersBackend(str(tmp_path))


SCHEMA = {"type": "object", "properties": {"easy": {"type": "string", "minLength": 5}, "hard": {"type": "string"}},
          "required": ["easy", "hard"], "additionalProperties": False}


@pytest.mark.slow
@pytest.mark.train
@pytest.mark.timeout(1800)
def test_batched_generation_with_and_without_a_schema():
    pytest.importorskip("gguf")
    from condor.llm.transformers import TransformersBackend

    backend = TransformersBackend(None, max_tokens=12, temperature=0.0, batch_size=4)

    async def go():
        await backend.warm_up()
        requests = [
            ChatRequest(messages=[{"role": "user", "content": "Write two questions about bread as JSON."}],
                        json_schema=SCHEMA, max_tokens=80),
            ChatRequest(messages=[{"role": "user", "content": "Name a colour."}]),
            ChatRequest(messages=[{"role": "user", "content": "Count to five."}], stop=[","]),
            ChatRequest(messages=[{"role": "user", "content": "x " * 9000}]),
        ]
        try:
            return await backend.generate(requests)
        finally:
            await backend.aclose()

    structured, plain, stopped, too_long = asyncio.run(go())
    assert backend.capabilities.structured and backend.capabilities.native_batching
    assert backend.capabilities.max_context == 8192
    assert structured.ok
    if structured.finish_reason == "stop":
        assert set(json.loads(structured.text)) == {"easy", "hard"}
    assert plain.ok and plain.text.strip() and 0 < plain.completion_tokens <= 12 and plain.prompt_tokens > 0
    assert stopped.ok and "," not in stopped.text
    assert not too_long.ok and "exceeds the context of 8192" in too_long.error
