"""`condor iterate` end to end: on the real SmolLM2-135M, and with a served generator that the loop points
at each new best model (the local fake server plays the server, so the promotion path runs in seconds).

Training is real in both (SmolLM2-135M, one step per iteration); the in-process test generates with the
transformers backend and judges with the embedded model through llama.cpp, as a user's first run would.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from condor_responder import respond
from fake_server import FakeChatServer
from judge.verdicts import pairwise_judge

pytestmark = [pytest.mark.slow, pytest.mark.train, pytest.mark.timeout(1800)]
pytest.importorskip("trl", reason="the train extra is installed by `make test`")

from condor.llm.embedded import default_model_path  # noqa: E402

TRAIN = {"max_steps": 1, "batch_size": 2, "max_length": 96, "learning_rate": 1e-4}


def condor(*args: str, timeout: int = 1700) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "condor.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout)


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def leaf(tag_path, language) -> str:
    return f"{language}:" + " > ".join(tag_path)


def test_one_iteration_on_the_real_model_writes_its_table_and_resumes_as_done(tmp_path):
    pytest.importorskip("llama_cpp", reason="the fixed judge is the embedded model")
    config = write_yaml(tmp_path / "run.yaml", {
        # A 135M model's questions rarely pass a topic check: that gate is tested elsewhere.
        "pipeline": {"relevance": "off", "resample_attempts": 0},
        "roles": {"judge": {"backend": "embedded", "max_tokens": 96, "n_ctx": 2048}},
    })
    settings = write_yaml(tmp_path / "iterate.yaml", {"train": TRAIN, "generator": {"backend": "transformers",
                                                                                    "batch_size": 16}})
    out = tmp_path / "iter"
    command = ["iterate", "-o", str(out), "--iterations", "1", "-c", str(config), "--settings", str(settings),
               # Sixteen leaves: with its gates on, a 135M model keeps rows from about a third of them
               # (the rest write numbering, loops or truncated JSON), and one leaf is held out.
               "--leaves", "16", "--tasks", "domain_qa", "--rounds", "0", "--max-tokens", "128",
               "--eval-share", "0.5", "--eval-questions", "2"]
    started = time.monotonic()
    result = condor(*command)
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"one iteration took {time.monotonic() - started:.0f}s")
    ledger = json.loads((out / "iterate.json").read_text())
    (row,) = ledger["iterations"]
    assert row["iteration"] == 1 and row["trained_from"] == "base" and row["train"]["steps"] == 1
    assert row["best_after"] in ("base", "iter-1") and row["reason"]
    assert row["eval"]["pairs"] >= 1 and row["eval"]["judge"].startswith("embedded:")
    assert (out / "iter-1" / "model" / "model.safetensors").is_file()
    table = (out / "iterations.md").read_text()
    assert re.search(r"^\| 1 \| base \| \d+ \| [\d.]+ -> [\d.]+ \| \d+ \| \d+ / \d+ / \d+ \| [\d.]+% \[", table, re.M)
    assert "win rate [95% CI]" in result.stdout and "best model:" in result.stdout
    assert "iteration 1/1" in result.stderr
    # Held-out leaves never reach the training rows.
    held = {leaf(q["tag_path"], q["language"]) for q in read_jsonl(out / "heldout.jsonl")}
    trained = read_jsonl(out / "iter-1" / "train.jsonl")
    assert held and not {leaf(r["meta"]["tag_path"], r["meta"]["language"]) for r in trained} & held

    started = time.monotonic()
    again = condor(*command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert time.monotonic() - started < 60 and (out / "iterations.md").read_text() == table


def _label(model: str) -> int:
    match = re.search(r"iter-(\d+)", model)
    return int(match.group(1)) if match else 0


def served_policy(body: dict) -> str:
    """Answers like the scripted model, signed by the model that was asked; the judge prefers newer models."""
    text = respond(body)
    if text.startswith("Here is a helpful answer"):
        text += f" Written by model {_label(body.get('model', ''))}."
    return text


def _newer(first: str, second: str) -> str:
    def number(text):
        match = re.search(r"Written by model (\d+)", text)
        return int(match.group(1)) if match else -1

    return "1" if number(first) > number(second) else "2" if number(second) > number(first) else "tie"


def test_a_served_generator_is_pointed_at_each_new_best_model(tmp_path):
    responder = pairwise_judge(_newer)

    def serve(body):
        return responder(body) if "<answer_1>" in body["messages"][-1]["content"] else served_policy(body)

    with FakeChatServer(responder=serve) as server:
        config = write_yaml(tmp_path / "run.yaml", {
            "pipeline": {"leaves": 2, "tasks": ["view"], "rounds": 1, "relevance": "off"},
            "roles": {"judge": {"backend": "openai", "base_url": server.base_url, "model": "judge-model"}},
        })
        settings = write_yaml(tmp_path / "iterate.yaml", {
            "base_model": str(default_model_path()), "gate": "rate", "eval_share": 0.5, "train": TRAIN,
            "generator": {"backend": "openai", "base_url": server.base_url, "model": "{policy}", "max_tokens": 64},
        })
        out = tmp_path / "iter"
        command = [sys.executable, "-m", "condor.cli.main", "iterate", "-o", str(out), "-n", "1", "-c", str(config),
                   "--settings", str(settings)]
        # Killed once its data is made: the rerun must not ask the policy to write any of it again.
        killed = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 900
        while not (out / "iter-1" / "train.jsonl").exists():
            assert killed.poll() is None and time.monotonic() < deadline, "the loop did not get to training"
            time.sleep(0.1)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=60)
        seen = server.request_count
        first = subprocess.run(command, capture_output=True, text=True, timeout=1200)
        assert first.returncode == 0, first.stderr[-3000:]
        assert not any("Knowledge tag" in body["messages"][-1]["content"] for body in server.request_log[seen:])
        questions = {q["question"] for q in read_jsonl(out / "heldout.jsonl")}

        def asked(model_dir: str) -> int:
            return sum(1 for body in server.request_log
                       if body["model"] == model_dir and body["messages"][-1]["content"] in questions)

        iter1 = str(out / "iter-1" / "model")
        assert asked(iter1) == len(questions)
        second = condor("iterate", "-o", str(out), "-n", "2", "-c", str(config), "--settings", str(settings))
        assert second.returncode == 0, second.stderr[-3000:]

    rows = json.loads((out / "iterate.json").read_text())["iterations"]
    assert [r["trained_from"] for r in rows] == ["base", "iter-1"]
    assert [r["promoted"] for r in rows] == [True, True] and rows[1]["best_after"] == "iter-2"
    assert rows[0]["eval"]["wins"] == rows[0]["eval"]["pairs"] > 0
    # Iteration 2's data came from the served iter-1 model, and its held-out answers were not asked again.
    assert any(body["model"] == iter1 for body in server.request_log)
    assert asked(iter1) == len(questions)
    card = json.loads((out / "iter-2" / "model" / "condor-model.json").read_text())
    assert card["base_path"] == str((out / "iter-1" / "model").resolve())
    assert "| 2 | iter-1 |" in (out / "iterations.md").read_text()

    changed = write_yaml(tmp_path / "other.yaml", {**yaml.safe_load(settings.read_text()), "gate": "ci"})
    refused = condor("iterate", "-o", str(out), "-n", "3", "-c", str(config), "--settings", str(changed))
    assert refused.returncode == 2 and "made with other settings" in refused.stderr
