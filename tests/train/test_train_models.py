"""`condor train` on the real SmolLM2-135M (the embedded GGUF, read by transformers): full, LoRA and DPO.

Tiny settings (four rows, a few steps, short rows) keep each test to seconds of training on two cores;
what is checked is that the loss goes down, that the saved model or adapter loads in the transformers
backend and generates, and that a finished, killed or changed run is handled as documented.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.train, pytest.mark.timeout(1800)]
pytest.importorskip("trl", reason="the train extra is installed by `make test`")
pytest.importorskip("peft")
pytest.importorskip("gguf")

from condor.llm.base import ChatRequest  # noqa: E402
from condor.llm.transformers import TransformersBackend  # noqa: E402
from condor.train.settings import TrainSettings  # noqa: E402
from condor.train.trainer import TrainError, train_model  # noqa: E402

#: One batch holds every row, so each step sees the same data and the loss can only be compared fairly.
SMALL = {"max_steps": 3, "batch_size": 4, "learning_rate": 1e-4, "max_length": 64, "warmup_ratio": 0.0}


def generate(model: str, text: str = "What do bees make?") -> list:
    backend = TransformersBackend(model, max_tokens=8, temperature=0.0, batch_size=2)

    async def go():
        try:
            return await backend.generate([ChatRequest(messages=[{"role": "user", "content": text}]),
                                           ChatRequest(messages=[{"role": "user", "content": "Hello!"}], max_tokens=4)])
        finally:
            await backend.aclose()

    return asyncio.run(go()), backend


def test_full_sft_lowers_the_loss_and_the_model_generates(tmp_path, sft_file):
    out = tmp_path / "model"
    result = train_model("sft", sft_file, out, TrainSettings(**SMALL))
    assert result.steps == 3 and result.kind == "full" and result.rows == 4
    assert result.final_loss < result.first_loss
    assert (out / "model.safetensors").is_file() and (out / "chat_template.jinja").is_file()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "loss" in e] == [1, 2, 3]
    card = json.loads((out / "condor-model.json").read_text())
    assert card["method"] == "sft" and card["kind"] == "full" and card["base_path"].endswith(".gguf")
    assert not (out / "checkpoints").exists()
    (completions, backend) = generate(str(out))
    assert all(c.ok and c.text.strip() for c in completions), completions
    assert completions[1].completion_tokens <= 4 and backend.identity.startswith("transformers:model:")

    started = time.monotonic()
    again = train_model("sft", sft_file, out, TrainSettings(**SMALL))
    assert again.already_done and again.steps == 3 and time.monotonic() - started < 5


def test_lora_saves_an_adapter_that_the_backend_loads_on_its_base(tmp_path, sft_file):
    out = tmp_path / "adapter"
    result = train_model("sft", sft_file, out, TrainSettings(**{**SMALL, "learning_rate": 1e-3}, lora=True, lora_r=8))
    assert result.kind == "lora" and result.final_loss < result.first_loss
    assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
    completions, backend = generate(str(out))
    assert all(c.ok and c.text.strip() for c in completions)
    assert backend.source.kind == "adapter"
    # An adapter trained on that adapter: bases are followed down to the GGUF.
    second = train_model("sft", sft_file, tmp_path / "adapter2",
                         TrainSettings(**{**SMALL, "max_steps": 1}, lora=True, base_model=str(out)))
    assert second.steps == 1
    completions, _ = generate(str(tmp_path / "adapter2"))
    assert completions[0].ok


def test_dpo_lowers_the_loss_from_log_2(tmp_path, dpo_file):
    out = tmp_path / "dpo"
    result = train_model("dpo", dpo_file, out, TrainSettings(**{**SMALL, "learning_rate": 5e-5}))
    assert result.method == "dpo" and result.steps == 3
    assert abs(result.first_loss - 0.6931) < 0.01  # policy and reference start equal: the loss is log 2
    assert result.final_loss < result.first_loss
    completions, _ = generate(str(out))
    assert completions[0].ok


def test_a_directory_is_bound_to_its_run(tmp_path, sft_file, dpo_file):
    out = tmp_path / "model"
    (out / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    (out / "training.json").write_text(json.dumps({"format": "condor-train v1", "status": "running", "key": "other"}))
    with pytest.raises(TrainError, match="checkpoints of a training run with other data"):
        train_model("sft", sft_file, out, TrainSettings(**SMALL))


def condor(*args: str) -> list[str]:
    return [sys.executable, "-m", "condor.cli.main", *args]


def test_the_command_shows_progress_and_resumes_after_a_kill(tmp_path, sft_file):
    out = tmp_path / "model"
    command = condor("train", "sft", str(sft_file), "-o", str(out), "--max-steps", "5", "--save-steps", "2",
                     "--batch-size", "4", "--max-length", "64", "--lr", "1e-4")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
    finally:
        first.wait(timeout=60)
    assert json.loads((out / "training.json").read_text())["status"] == "running"
    second = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stderr
    assert "resumed from step" in second.stderr and "resumed from step" in second.stdout
    assert "5 steps" in second.stdout and "loss" in second.stderr and "ETA" in second.stderr
    assert json.loads((out / "training.json").read_text())["status"] == "done"
    steps = [json.loads(line)["step"] for line in (out / "training_log.jsonl").read_text().splitlines()
             if "loss" in json.loads(line)]
    assert sorted(set(steps)) == [1, 2, 3, 4, 5]


def test_command_errors_are_one_line(tmp_path, sft_file):
    cases = [
        (condor("train", "sft", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "m")), "no such file"),
        (condor("train", "dpo", str(sft_file), "-o", str(tmp_path / "m")), "no usable prompt/chosen/rejected pairs"),
        (condor("train", "sft", str(sft_file), "-o", str(tmp_path / "m"), "--precision", "bf16", "--device", "cpu"),
         "needs a GPU"),
        (condor("train", "sft", str(sft_file), "-o", str(tmp_path / "m"), "--precision", "fp8"), "--precision"),
        (condor("train", "sft", str(sft_file), "-o", str(tmp_path / "m"), "--base-model", str(tmp_path)),
         "holds no model"),
    ]
    for command, expected in cases:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr
