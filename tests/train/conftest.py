"""Fixtures of the training tests: a small SFT and DPO dataset, and one cache for the converted GGUF.

Training and the transformers backend read the embedded SmolLM2-135M GGUF, converted once into a Hugging
Face directory; the tests keep that conversion in one directory per session (``CONDOR_CACHE_DIR``, which
subprocesses inherit) instead of the user's ``~/.cache``. Nothing comes from a hub (``HF_HUB_OFFLINE``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

FACTS = [
    ("What colour is the sky on a clear day?", "The sky is blue on a clear day."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("What do bees make?", "Bees make honey."),
]


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    previous = {name: os.environ.get(name) for name in ("CONDOR_CACHE_DIR", "HF_HUB_OFFLINE", "TQDM_DISABLE")}
    os.environ["CONDOR_CACHE_DIR"] = str(tmp_path_factory.mktemp("condor-cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TQDM_DISABLE"] = "1"
    yield Path(os.environ["CONDOR_CACHE_DIR"])
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def sft_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sft.jsonl"
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in FACTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def dpo_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "dpo.jsonl"
    rows = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
             "rejected": [{"role": "assistant", "content": "I am not sure, maybe ask someone else."}]} for q, a in FACTS]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
