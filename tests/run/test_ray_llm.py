"""vLLM inside Ray through Ray Data's LLM processors: its configuration, the no-GPU message, and the
mapping of requests to processor rows and back. No GPU here, so the engines themselves never run."""

from __future__ import annotations

import json

import pytest

from condor.errors import ConfigError
from condor.filters.gates import AnswerQuality
from condor.filters.quality import QualityFilter
from condor.llm.base import ChatRequest
from condor.llm.settings import VLLMSettings
from condor.llm.vllm import VLLMBackend
from condor.run.ray_llm import (
    ProcessorBackend, completions_from, postprocess, processor_config, request_row, require_gpus,
)
from condor.stages.answers import AnswerStage

pytest.importorskip("ray.data.llm")


def vllm_settings(**more) -> VLLMSettings:
    values = {"model": "/models/qwen2.5-7b-instruct", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.85,
              "max_model_len": 8192, "max_batch": 128, "max_tokens": 512, "temperature": 0.7, "seed": 11, **more}
    return VLLMSettings(**values)


def engine_row(request: dict, text: str, generated: int, prompt_tokens: int = 9) -> dict:
    """What Ray Data's vLLM stage makes of a request row: the row updated with the fields of its
    ``vLLMOutputData`` (ray/llm/_internal/batch/stages/vllm_engine_stage.py, Ray 2.60) and the stage's own."""
    from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMOutputData

    output = vLLMOutputData(prompt="<|im_start|>user ...", prompt_token_ids=list(range(prompt_tokens)),
                            num_input_tokens=prompt_tokens, generated_tokens=list(range(generated)),
                            generated_text=text, num_generated_tokens=generated)
    return {**request, **output.model_dump(), "request_id": 0, "batch_uuid": "b", "time_taken_llm": 0.1,
            "params": "SamplingParams(...)", "__inference_error__": ""}


def failed_row(request: dict, error: str) -> dict:
    from ray.llm._internal.batch.stages.vllm_engine_stage import vLLMOutputData

    output = vLLMOutputData(prompt="<|im_start|>user ...", prompt_token_ids=None, num_input_tokens=0)
    return {**request, **output.model_dump(), "request_id": -1, "batch_uuid": "b", "time_taken_llm": -1,
            "params": "", "__inference_error__": error}


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

    out = [postprocess(row) for row in (
        engine_row(rows[1], '{"easy": "x"}', generated=4),
        failed_row(rows[0], "ValueError: prompt too long\ntraceback..."),
        {**engine_row(rows[0], "stray row", generated=2), "condor_index": 7},
    )]
    first, second, third = completions_from(out, 3)
    assert not first.ok and first.error == "vLLM: ValueError: prompt too long"
    assert second.ok and second.text == '{"easy": "x"}' and second.prompt_tokens == 9 and second.completion_tokens == 4
    assert second.finish_reason is None  # Ray's rows do not say why it stopped; nothing is made up
    assert not third.ok and "no reply" in third.error
    assert backend.capabilities.native_batching and backend.capabilities.structured
    assert backend.describe()["engines"] == 1
    # The same identity and request defaults as the in-process engine, so the two share cache entries.
    assert backend.identity == "vllm:/models/qwen2.5-7b-instruct" == VLLMBackend(vllm_settings()).identity
    assert backend.resolve(ChatRequest(messages=[])) == VLLMBackend(vllm_settings()).resolve(ChatRequest(messages=[]))
    assert ProcessorBackend(vllm_settings(dtype="bfloat16"), {"GPU": 2.0}).identity.endswith(":dtype=bfloat16")


def test_an_answer_that_used_its_whole_token_budget_is_cut_off_and_kept_out_of_the_dataset():
    backend = ProcessorBackend(vllm_settings(max_tokens=64), {"GPU": 2.0})
    record = {"id": "en/x/domain_qa/medium", "question": "Why do sourdough starters need regular feeding?",
              "difficulty": "medium", "language": "en", "tag_path": ["Cooking", "Baking", "Sourdough"]}
    [request] = AnswerStage().requests(record)
    row = request_row(0, backend.resolve(request))
    assert row["sampling_params"]["max_tokens"] == 64
    cut = "Regular feeding keeps the yeast and bacteria active because each feeding adds fresh flour and " * 2
    done = "Regular feeding replaces the flour the microbes have eaten, so the culture stays active and sour."
    [truncated], [complete] = completions_from([postprocess(engine_row(row, cut, generated=64))], 1), \
        completions_from([postprocess(engine_row(row, done, generated=21))], 1)
    assert truncated.finish_reason == "length" and complete.finish_reason is None
    gate = AnswerQuality(QualityFilter())
    for completion, kept in ((truncated, False), (complete, True)):
        [answered] = AnswerStage().parse(record, [completion])
        verdict = gate.check(answered)
        assert (verdict is answered) == kept, verdict
        if not kept:
            assert verdict.reason == "answer_truncated"


def test_a_rows_schema_bounds_are_fitted_to_its_budget():
    schema = {"type": "object", "properties": {"reason": {"type": "string", "minLength": 5, "maxLength": 700}},
              "required": ["reason"]}
    request = ChatRequest(messages=[{"role": "user", "content": "judge"}], max_tokens=60, json_schema=schema)
    sent = json.loads(request_row(0, request)["sampling_params"]["structured_outputs"]["json"])
    assert sent["properties"]["reason"]["maxLength"] == 150  # (60 - 4 - 6) x 3
    assert schema["properties"]["reason"]["maxLength"] == 700
