"""Run configuration: strict validation, readable errors, CLI overrides, secrets only by name."""

from pathlib import Path

import pytest

from condor.config import ConfigError, RunConfig, load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "config.yaml"


def test_example_config_is_valid():
    cfg = load_config(EXAMPLE)
    assert cfg.llm.backend == "openai" and cfg.backend_for("judge").model == "my-judge-model"
    assert cfg.backend_for("critic") is cfg.llm


def test_defaults_and_overrides():
    cfg = load_config(None, {"llm.model": "m", "llm.concurrency": 8, "pipeline.rounds": None})
    assert cfg.llm.model == "m" and cfg.llm.concurrency == 8 and cfg.pipeline.rounds == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("llm:\n  concurency: 3\n", "llm.concurency: Extra inputs are not permitted"),
        ("llm:\n  concurrency: 0\n", "llm.concurrency: Input should be greater than or equal to 1"),
        ("llm:\n  base_url: localhost:8000\n", "base_url must start with http"),
        ("roles:\n  writer: {}\n", "unknown role(s) ['writer']"),
        ("pipeline:\n  select: random\n", "pipeline.select"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("llm: [unclosed\n", "line 2, column 1: not valid YAML"),
    ],
)
def test_bad_configs_name_the_place(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_missing_file_and_missing_key_variable(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "none.yaml")
    monkeypatch.delenv("NOPE_KEY", raising=False)
    cfg = RunConfig.model_validate({"llm": {"base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "NOPE_KEY"}})
    with pytest.raises(ConfigError, match="NOPE_KEY"):
        cfg.llm.api_key()
    monkeypatch.setenv("NOPE_KEY", "sk-zz-secret")
    assert cfg.llm.api_key() == "sk-zz-secret"
    assert "sk-zz-secret" not in cfg.model_dump_json()
