"""Provenance through the real CLI: the manifest says which settings made each step's data, and a rerun
with a setting that changes results (temperature, max_tokens, model) redoes the steps it touches
instead of writing the new value down over data made with the old one.
"""

from __future__ import annotations

import json
from pathlib import Path

from condor_responder import respond
from typer.testing import CliRunner

from condor.cli.main import app


def server_args(server, *more: str) -> list[str]:
    return ["--base-url", server.base_url, "--model", "fake-model", "--quiet", *more]


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def invoke(*args: str):
    result = CliRunner().invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result


def test_a_run_redone_at_another_temperature_records_the_temperature_that_made_it(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    args = ["run", "-o", out, "--leaves", "1", "--tasks", "view", "--rounds", "1", *server_args(fake_server)]
    invoke(*args, "--temperature", "0.7")
    first = fake_server.request_count
    steps = manifest(out)["stages"]
    assert {steps[name]["settings"]["temperature"] for name in ("questions", "answer", "critique_1", "refine_1")} == {0.7}
    assert manifest(out)["steps"]["answer"]["settings"]["temperature"] == 0.7

    # Another temperature: every model step is redone with it (no answer made at 0.7 is relabelled 0.2).
    fake_server.reset_stats()
    result = invoke(*args, "--temperature", "0.2")
    assert fake_server.request_count == first
    assert {body["temperature"] for body in fake_server.request_log} == {0.2}
    assert "questions: temperature 0.7 -> 0.2 since its data was made; redone" in result.output
    steps = manifest(out)["stages"]
    assert {steps[name]["settings"]["temperature"] for name in ("questions", "answer", "critique_1", "refine_1")} == {0.2}
    assert manifest(out)["config"]["llm"]["temperature"] == 0.2

    # The same temperature again: nothing to do. Back to 0.7: answered from the request cache, no call.
    fake_server.reset_stats()
    invoke(*args, "--temperature", "0.2")
    assert fake_server.request_count == 0
    invoke(*args, "--temperature", "0.7")
    assert fake_server.request_count == 0
    assert manifest(out)["stages"]["answer"]["settings"]["temperature"] == 0.7


def test_max_tokens_and_model_are_part_of_it_and_settings_that_do_not_matter_are_not(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    args = ["run", "-o", out, "--leaves", "1", "--tasks", "view", "--rounds", "0", *server_args(fake_server)]
    invoke(*args)
    fake_server.reset_stats()
    invoke(*args, "--concurrency", "3")  # how fast, not what: nothing is redone
    assert fake_server.request_count == 0
    invoke(*args, "--max-tokens", "300")
    assert fake_server.request_count > 0 and {body["max_tokens"] for body in fake_server.request_log} == {300}
    assert manifest(out)["stages"]["questions"]["settings"]["max_tokens"] == 300


def test_generate_redoes_outputs_made_with_other_settings(tmp_path, fake_server):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n" for i in range(3)))
    out = tmp_path / "out"
    invoke("generate", prompts, "-o", out, *server_args(fake_server), "--temperature", "0.5")
    assert manifest(out)["stages"]["generate"]["settings"]["temperature"] == 0.5
    fake_server.reset_stats()
    result = invoke("generate", prompts, "-o", out, *server_args(fake_server), "--temperature", "0.9")
    assert fake_server.request_count == 3 and {body["temperature"] for body in fake_server.request_log} == {0.9}
    assert "temperature 0.5 -> 0.9" in result.output
    assert manifest(out)["stages"]["generate"]["settings"]["temperature"] == 0.9
