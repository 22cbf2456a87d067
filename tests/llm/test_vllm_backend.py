"""The vllm backend kind without a GPU: its settings, the request-to-vLLM mapping as pure functions, the
one-line messages when vLLM or a GPU is missing, and the batching glue against a stand-in engine.

vLLM cannot run here (it needs a CUDA GPU and a CUDA build of torch), so the engine calls are checked
against a small stand-in that records what it is given; everything else is real.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from condor.cli.main import app
from condor.config import ConfigError, load_config
from condor.llm.base import ChatRequest
from condor.llm.registry import build_backend
from condor.llm.settings import VLLMSettings
from condor.llm.vllm import (
    VLLMApi, VLLMBackend, completion_from, engine_arguments, missing_requirement, sampling_arguments,
    structured_argument,
)
from condor.run.local import StageRunner
from condor.run.directory import RunDirectory
from condor.stages.base import ParseError, Stage

SCHEMA = {"type": "object", "properties": {"ok": {"type": "string"}}, "required": ["ok"]}


def ask(text: str, **kwargs) -> ChatRequest:
    return ChatRequest(messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": text}], **kwargs)


# ------------------------------------------------------------------------------------ settings


def test_settings_are_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "llm:\n  backend: vllm\n  model: /models/qwen\n  tensor_parallel_size: 4\n  gpu_memory_utilization: 0.85\n"
        "  max_model_len: 8192\n  dtype: bfloat16\n  enable_prefix_caching: true\n  max_batch: 512\n"
        "roles:\n  judge: {backend: vllm, model: /models/judge, quantization: awq}\n"
    )
    cfg = load_config(path)
    assert isinstance(cfg.llm, VLLMSettings) and cfg.llm.tensor_parallel_size == 4 and cfg.llm.max_batch == 512
    assert cfg.backend_for("judge").quantization == "awq"
    for line, message in [
        ("  tensor_parallel_size: 0\n", "llm.tensor_parallel_size: Input should be greater than or equal to 1"),
        ("  gpu_memory_utilization: 1.5\n", "llm.gpu_memory_utilization"),
        ("  dtype: float8\n", "llm.dtype"),
        ("  max_model_len: 1024\n  max_tokens: 1024\n", r"max_tokens \(1024\) must be below max_model_len \(1024\)"),
        ("  base_url: http://x/v1\n", "llm.base_url: Extra inputs are not permitted"),
        ("  max_batch: 0\n", "llm.max_batch"),
    ]:
        path.write_text("llm:\n  backend: vllm\n  model: /m\n" + line)
        with pytest.raises(ConfigError, match=message) as info:
            load_config(path)
        assert "(for backend vllm)" in str(info.value)
    with pytest.raises(ValidationError, match="model"):
        VLLMSettings(model="")


def test_engine_arguments_map_the_settings_and_leave_unset_ones_to_vllm():
    settings = VLLMSettings(model="/models/m", tensor_parallel_size=2, max_model_len=4096, seed=7)
    assert engine_arguments(settings) == {
        "model": "/models/m", "tensor_parallel_size": 2, "gpu_memory_utilization": 0.9, "max_model_len": 4096,
        "dtype": "auto", "enable_prefix_caching": True, "enforce_eager": False, "trust_remote_code": False, "seed": 7,
    }
    minimal = engine_arguments(VLLMSettings(model="m"))
    assert "max_model_len" not in minimal and "quantization" not in minimal and "tokenizer" not in minimal


def test_capabilities_and_identity():
    backend = build_backend(VLLMSettings(model="/models/m", max_batch=64, max_model_len=2048, dtype="float16"))
    assert isinstance(backend, VLLMBackend)
    caps = backend.capabilities
    assert caps.native_batching and caps.max_batch == 64 and caps.structured and caps.max_context == 2048
    assert backend.identity == "vllm:/models/m:dtype=float16"
    off = build_backend(VLLMSettings(model="m", structured="off"))
    assert not off.capabilities.structured


# ------------------------------------------------------------------------------------ mapping


def test_sampling_arguments_take_the_settings_defaults_and_a_seed_per_sample():
    backend = VLLMBackend(VLLMSettings(model="m", max_tokens=300, temperature=0.6, seed=10))
    plain = sampling_arguments(backend.resolve(ask("hi")))
    assert plain == {"n": 1, "max_tokens": 300, "temperature": 0.6, "seed": 10}
    own = sampling_arguments(backend.resolve(ask("hi", max_tokens=5, temperature=0.0, top_p=0.5, stop=["\n"],
                                                 sample_index=2)))
    assert own == {"n": 1, "max_tokens": 5, "temperature": 0.0, "top_p": 0.5, "seed": 12, "stop": ["\n"]}
    unseeded = VLLMBackend(VLLMSettings(model="m"))
    assert "seed" not in sampling_arguments(unseeded.resolve(ask("hi")))


def test_a_schema_becomes_structured_outputs_or_guided_decoding():
    assert structured_argument(SCHEMA, "structured_outputs") == ("structured_outputs", {"json": SCHEMA})
    assert structured_argument(SCHEMA, "guided_decoding") == ("guided_decoding", {"json": SCHEMA})
    with pytest.raises(ValueError):
        structured_argument(SCHEMA, "guided_json")


def test_request_outputs_become_completions():
    out = SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=[SimpleNamespace(text="hi \ud83d", finish_reason="length",
                                                                               token_ids=[4, 5])])
    completion = completion_from(out, "m")
    assert (completion.text, completion.finish_reason, completion.prompt_tokens, completion.completion_tokens) == (
        "hi \ufffd", "length", 3, 2)
    assert not completion_from(SimpleNamespace(outputs=[]), "m").ok
    aborted = completion_from(SimpleNamespace(outputs=[SimpleNamespace(text="", finish_reason="abort")]), "m")
    assert not aborted.ok and aborted.transient


# ------------------------------------------------------------------------------------ missing pieces


def test_without_vllm_installed_the_message_says_how_to_get_it():
    if missing_requirement() is None:
        pytest.skip("vLLM and a GPU are present")
    assert "pip install 'condor-data[vllm]'" in missing_requirement(lambda name: None)


def test_without_a_gpu_the_message_says_so():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    message = missing_requirement(lambda name: object())  # as if vLLM were installed
    assert "needs a CUDA GPU" in message and "\n" not in message


@pytest.mark.parametrize("command", ["run", "generate"])
def test_the_cli_says_it_in_one_line(tmp_path, command):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"id": "a", "prompt": "hi"}) + "\n")
    args = ["generate", str(prompts)] if command == "generate" else ["run"]
    result = CliRunner().invoke(app, [*args, "-o", str(tmp_path / "out"), "--backend", "vllm", "--model", "/models/m",
                                      "--quiet"])
    assert result.exit_code == 2, result.output
    assert "the vllm backend needs" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ the engine glue


class StandInEngine:
    """Records what vllm.LLM would be given; answers "OK:<text>", or {"ok": ...} under a schema."""

    calls: list[tuple[list, list]] = []
    created: list[dict] = []

    def __init__(self, **kwargs):
        StandInEngine.created.append(kwargs)

    def chat(self, conversations, sampling_params, use_tqdm=True):
        StandInEngine.calls.append((conversations, sampling_params))
        if any("TOO LONG" in c[-1]["content"] for c in conversations):
            raise ValueError("prompt is longer than max_model_len")
        outputs = []
        for conversation, params in zip(conversations, sampling_params):
            text = conversation[-1]["content"].removeprefix("say ")
            body = json.dumps({"ok": text}) if "structured_outputs" in params.kwargs else f"OK:{text}"
            outputs.append(SimpleNamespace(prompt_token_ids=[0] * 4,
                                           outputs=[SimpleNamespace(text=body, finish_reason="stop", token_ids=[0, 0])]))
        return outputs


class Params:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def stand_in() -> VLLMApi:
    return VLLMApi(StandInEngine, Params, Params, "structured_outputs")


@pytest.fixture
def engine():
    StandInEngine.calls, StandInEngine.created = [], []
    return StandInEngine


async def test_one_engine_call_per_batch_with_sampling_params_and_schemas(engine):
    backend = VLLMBackend(VLLMSettings(model="/models/m", seed=3, max_tokens=50), api=stand_in)
    await backend.warm_up()
    completions = await backend.generate([ask("say a"), ask("say b", json_schema=SCHEMA, sample_index=1)])
    assert [c.text for c in completions] == ["OK:a", '{"ok": "b"}']
    assert completions[0].prompt_tokens == 4 and completions[0].completion_tokens == 2
    assert engine.created == [engine_arguments(VLLMSettings(model="/models/m", seed=3, max_tokens=50))]
    [(conversations, params)] = engine.calls
    assert conversations[0] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say a"}]
    assert params[0].kwargs == {"n": 1, "max_tokens": 50, "temperature": 0.7, "seed": 3}
    assert params[1].kwargs["seed"] == 4 and params[1].kwargs["structured_outputs"].kwargs == {"json": SCHEMA}
    await backend.aclose()


async def test_a_refused_prompt_fails_alone(engine):
    backend = VLLMBackend(VLLMSettings(model="m"), api=stand_in)
    completions = await backend.generate([ask("say a"), ask("TOO LONG"), ask("say c")])
    assert [c.text for c in completions] == ["OK:a", None, "OK:c"]
    assert "longer than max_model_len" in completions[1].error and not completions[1].transient
    assert [len(conversations) for conversations, _ in engine.calls] == [3, 1, 1, 1]
    await backend.aclose()


class SayStage(Stage):
    name = "say"
    role = "answerer"

    def requests(self, record, *, structured=False):
        return [ChatRequest(messages=[{"role": "user", "content": f"say {record['text']}"}])]

    def parse(self, record, completions, *, structured=False):
        text = completions[0].text or ""
        if not text.startswith("OK:"):
            raise ParseError("bad_prefix", text)
        return [{**record, "answer": text[3:]}]


async def test_the_executor_hands_the_engine_requests_of_many_records_at_once(tmp_path, engine):
    backend = VLLMBackend(VLLMSettings(model="m", max_batch=16), api=stand_in)
    store = RunDirectory(tmp_path).stage("say")
    outcome = await StageRunner(SayStage(), backend, store).run([{"id": f"r{i:02d}", "text": f"t{i}"} for i in range(50)])
    assert outcome.records == 50
    sizes = [len(conversations) for conversations, _ in engine.calls]
    assert sum(sizes) == 50 and max(sizes) == 16 and len(sizes) <= 5
    await backend.aclose()
