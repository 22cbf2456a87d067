"""vLLM inside Ray through Ray Data's LLM processors: its configuration, the no-GPU message, and the
mapping of requests to processor rows and back. No GPU here, so the engines themselves never run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from condor.errors import ConfigError
from condor.llm.base import ChatRequest
from condor.run.ray_llm import ProcessorBackend, completions_from, processor_config, request_row, require_gpus

pytest.importorskip("ray.data.llm")


def vllm_settings(**more):
    """The fields of the vllm backend kind's settings (llm/settings.py) that this module reads."""
    values = {"backend": "vllm", "model": "/models/qwen2.5-7b-instruct", "tokenizer": None,
              "tensor_parallel_size": 2, "gpu_memory_utilization": 0.85, "max_model_len": 8192, "dtype": "auto",
              "quantization": None, "enable_prefix_caching": True, "max_batch": 128, "enforce_eager": False,
              "trust_remote_code": False, "max_tokens": 512, "temperature": 0.7, "top_p": None, "seed": 11,
              "structured": "auto", **more}
    return SimpleNamespace(**values)


def test_no_gpu_is_one_clear_line():
    with pytest.raises(ConfigError) as info:
        require_gpus({"CPU": 2.0, "memory": 1e9})
    message = str(info.value)
    assert "\n" not in message and "has none" in message and "--base-url" in message
    with pytest.raises(ConfigError, match="tensor_parallel_size 4 needs 4 GPUs per engine; this Ray cluster has 2"):
        require_gpus({"GPU": 2.0}, per_engine=4)
    assert require_gpus({"GPU": 8.0}, per_engine=2) == 4


def test_the_processor_config_carries_the_engine_settings_and_one_engine_per_tp_group():
    config = processor_config(vllm_settings(), {"CPU": 32.0, "GPU": 8.0})
    assert type(config).__name__ == "vLLMEngineProcessorConfig"
    assert config.model_source == "/models/qwen2.5-7b-instruct"
    assert config.concurrency == 4 and config.batch_size == 128 and config.should_continue_on_error
    engine = config.engine_kwargs
    assert engine["tensor_parallel_size"] == 2 and engine["max_model_len"] == 8192
    assert engine["enable_prefix_caching"] is True and engine["gpu_memory_utilization"] == 0.85
    assert engine["dtype"] == "auto" and engine["enforce_eager"] is False
    assert "quantization" not in engine and "tokenizer" not in engine  # unset settings are left to vLLM
    with pytest.raises(ConfigError, match="has none"):
        processor_config(vllm_settings(), {"CPU": 32.0})
    with pytest.raises(ConfigError, match="needs a model"):
        processor_config(vllm_settings(model=""), {"GPU": 8.0})


def test_a_backend_on_a_cluster_without_gpus_is_refused_before_anything_runs():
    with pytest.raises(ConfigError, match="this Ray cluster has none"):
        ProcessorBackend(vllm_settings(), {"CPU": 2.0})


def test_requests_become_rows_with_sampling_and_schema_and_replies_come_back_in_order():
    backend = ProcessorBackend(vllm_settings(), {"GPU": 2.0})
    schema = {"type": "object", "properties": {"easy": {"type": "string"}}, "required": ["easy"]}
    plain = backend.resolve(ChatRequest(messages=[{"role": "user", "content": "hi"}], sample_index=2))
    shaped = backend.resolve(ChatRequest(messages=[{"role": "user", "content": "q"}], json_schema=schema,
                                         temperature=0.0))
    rows = [request_row(0, plain), request_row(1, shaped)]
    assert rows[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert rows[0]["sampling_params"] == {"max_tokens": 512, "temperature": 0.7, "top_p": 1.0, "seed": 13, "stop": []}
    assert "structured_outputs" not in rows[0]["sampling_params"]
    assert json.loads(rows[1]["sampling_params"]["structured_outputs"]["json"]) == schema
    assert rows[1]["sampling_params"]["temperature"] == 0.0

    out = [
        {"condor_index": 1, "generated_text": '{"easy": "x"}', "num_input_tokens": 9, "num_generated_tokens": 4,
         "__inference_error__": ""},
        {"condor_index": 0, "generated_text": "", "__inference_error__": "prompt too long\ntraceback..."},
        {"condor_index": 7, "generated_text": "stray row"},
    ]
    first, second, third = completions_from(out, 3)
    assert not first.ok and first.error == "vLLM: prompt too long"
    assert second.ok and second.text == '{"easy": "x"}' and second.prompt_tokens == 9 and second.completion_tokens == 4
    assert not third.ok and "no reply" in third.error
    assert backend.capabilities.native_batching and backend.capabilities.structured
    assert backend.describe()["engines"] == 1
    assert backend.identity == "vllm:/models/qwen2.5-7b-instruct"
    assert ProcessorBackend(vllm_settings(dtype="bfloat16"), {"GPU": 2.0}).identity.endswith(":dtype=bfloat16")
