"""`condor void/refine/run` against the real local HTTP server with a scripted model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from condor_responder import respond
from typer.testing import CliRunner

from condor.cli.main import app


def run_cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def server_args(server, *more):
    return ["--base-url", server.base_url, "--model", "fake-model", "--quiet", *more]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_run_20_leaves_7_tasks_counts_add_up_and_resume_is_free(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    fake_server.queue_faults("500", "drop", "429")  # transient: recovered by retries
    run_cli("run", "-o", str(out), "--leaves", "20", "--rounds", "2", *server_args(fake_server))
    sft = read_jsonl(out / "sft.jsonl")
    rejected = read_jsonl(out / "rejected.jsonl")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["questions"]["units"] == 140
    questions = manifest["stages"]["questions"]["records"]
    question_rejections = manifest["stages"]["questions"]["rejections"]
    assert questions + 3 * question_rejections == 420
    assert len(sft) + len(rejected) == questions + question_rejections
    assert len(sft) > 400
    row = sft[0]
    assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    meta = row["meta"]
    assert meta["difficulty"] in {"easy", "medium", "hard"} and meta["language"] == "en"
    assert len(meta["tag_path"]) >= 2 and meta["task"]
    assert len(meta["versions"]) == 3 and len(meta["critiques"]) == 2
    assert row["messages"][1]["content"] == meta["versions"][-1]["answer"]
    assert set(meta["models"]) >= {"question_writer", "answerer", "critic", "refiner"}
    assert {"questions", "answer", "critique_1", "refine_1", "critique_2", "refine_2"} <= set(meta["templates"])
    assert manifest["stages"]["answer"]["usage"]["completion_tokens"] > 0

    before = fake_server.request_count
    run_cli("run", "-o", str(out), "--leaves", "20", "--rounds", "2", *server_args(fake_server))
    assert fake_server.request_count == before
    assert read_jsonl(out / "sft.jsonl") == sft


def test_best_selection_with_judge_and_preference_pairs(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    run_cli("run", "-o", str(out), "--leaves", "2", "--tasks", "domain_qa,view", "--select", "best",
            *server_args(fake_server))
    sft = read_jsonl(out / "sft.jsonl")
    assert sft and all(r["meta"]["chosen"]["version"] == 1 for r in sft)
    assert all(len(r["meta"]["scores"]) == 2 for r in sft)
    pairs = read_jsonl(out / "preference.jsonl")
    assert len(pairs) == len(sft)
    assert pairs[0]["chosen"][0]["content"].startswith("Improved version")
    assert pairs[0]["prompt"][0]["role"] == "user"


def test_void_then_refine_and_chinese(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    run_cli("void", "-o", str(out), "--leaves", "2", "--tasks", "creation", "--lang", "zh", *server_args(fake_server))
    void_rows = read_jsonl(out / "void.jsonl")
    assert void_rows and all(r["meta"]["language"] == "zh" for r in void_rows)
    run_cli("refine", "-o", str(out), *server_args(fake_server))
    assert len(read_jsonl(out / "sft.jsonl")) == len(void_rows)


def test_refine_an_existing_dataset_with_bad_lines(tmp_path, fake_server):
    fake_server.responder = respond
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join([
        json.dumps({"messages": [{"role": "user", "content": "How do I boil an egg properly?"},
                                 {"role": "assistant", "content": "Put it in boiling water for nine minutes."}]}),
        json.dumps({"question": "What is a prime number?", "answer": "A number with exactly two divisors."}),
        "{broken",
        json.dumps({"messages": [{"role": "assistant", "content": "no user turn"}]}),
    ]) + "\n")
    out = tmp_path / "out"
    run_cli("refine", "-o", str(out), "--input", str(data), *server_args(fake_server))
    sft = read_jsonl(out / "sft.jsonl")
    assert len(sft) == 2
    rejected = read_jsonl(out / "rejected.jsonl")
    assert sorted(r["detail"].split(":")[0] for r in rejected) == ["line 3", "line 4"]


def test_refine_without_void_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["refine", "-o", str(tmp_path / "nothing"), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    assert result.exit_code == 2 and "condor void" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "nosuch"], "unknown task type 'nosuch'"),
        (["--select", "random"], "pipeline.select"),
        (["--lang", "fr"], "pipeline.lang"),
        (["--tree", "missing-tree.yaml"], "no such tree file"),
    ],
)
def test_bad_pipeline_settings_are_one_line_errors(tmp_path, fake_server, args, message):
    result = CliRunner().invoke(app, ["run", "-o", str(tmp_path / "o"), *server_args(fake_server), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert fake_server.request_count == 0


def test_changed_plan_settings_are_refused_on_resume(tmp_path, fake_server):
    fake_server.responder = respond
    out = str(tmp_path / "o")
    run_cli("void", "-o", out, "--leaves", "1", "--tasks", "view", *server_args(fake_server))
    result = CliRunner().invoke(app, ["void", "-o", out, "--leaves", "2", "--tasks", "view", *server_args(fake_server)])
    assert result.exit_code == 2 and "different plan" in result.output


def test_more_rounds_or_another_selection_later_reuse_finished_work(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    base = ["run", "-o", str(out), "--leaves", "1", "--tasks", "view", *server_args(fake_server)]
    run_cli(*base, "--rounds", "1")
    first = fake_server.request_count
    assert all(len(r["meta"]["versions"]) == 2 for r in read_jsonl(out / "sft.jsonl"))

    run_cli(*base, "--rounds", "2")
    rows = read_jsonl(out / "sft.jsonl")
    assert rows and all(len(r["meta"]["versions"]) == 3 for r in rows)
    assert all(r["meta"]["chosen"]["version"] == 2 for r in rows)
    # Only the second round was new: one critique and one refinement per record.
    assert fake_server.request_count == first + 2 * len(rows)

    second = fake_server.request_count
    run_cli(*base, "--rounds", "2", "--select", "best")
    rows = read_jsonl(out / "sft.jsonl")
    assert all(len(r["meta"]["scores"]) == 3 for r in rows)
    assert fake_server.request_count == second + 3 * len(rows)  # only the judge calls
    run_cli(*base, "--rounds", "2", "--select", "best")
    assert fake_server.request_count == second + 3 * len(rows)


def test_custom_task_types_from_the_config(tmp_path, fake_server):
    fake_server.responder = respond
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "tasks:\n"
        "  - slug: travel_planning\n"
        "    name_en: Travel Planning\n"
        "    name_zh: 旅行规划\n"
        "    description_en: The user wants a concrete day-by-day plan for a trip with a budget.\n"
    )
    config = tmp_path / "run.yaml"
    config.write_text(f"pipeline:\n  task_file: {tasks}\n  task_file_mode: replace\n  leaves: 1\n  rounds: 0\n")
    out = tmp_path / "out"
    run_cli("run", "-o", str(out), "-c", str(config), *server_args(fake_server))
    rows = read_jsonl(out / "sft.jsonl")
    assert len(rows) == 3 and {r["meta"]["task"] for r in rows} == {"travel_planning"}
    assert "Travel Planning" in fake_server.request_log[0]["messages"][-1]["content"]
    assert all(len(r["meta"]["versions"]) == 1 and r["meta"]["chosen"]["version"] == 0 for r in rows)


def test_api_key_never_reaches_the_run_directory(tmp_path, fake_server, monkeypatch):
    fake_server.responder = respond
    monkeypatch.setenv("CONDOR_PIPELINE_KEY", "sk-pipeline-secret-987")
    out = tmp_path / "out"
    run_cli("run", "-o", str(out), "--leaves", "1", "--tasks", "view", "--api-key-env", "CONDOR_PIPELINE_KEY",
            *server_args(fake_server))
    assert fake_server.last_headers["Authorization"] == "Bearer sk-pipeline-secret-987"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["llm"]["api_key_env"] == "CONDOR_PIPELINE_KEY"
    for path in out.rglob("*"):
        if path.is_file():
            assert b"sk-pipeline-secret-987" not in path.read_bytes(), path


def _accounting(out: Path) -> tuple[list[str], list[str]]:
    sft = [r["meta"]["id"] for r in read_jsonl(out / "sft.jsonl")]
    rejected = [r["id"] for r in read_jsonl(out / "rejected.jsonl") if r["stage"] != "questions"]
    return sft, rejected


def test_redone_filter_drops_stale_downstream_records(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    args = ["run", "-o", str(out), "--leaves", "3", "--tasks", "view,creation", *server_args(fake_server)]
    run_cli(*args)
    sft, rejected = _accounting(out)
    assert len(sft) == 18 and not rejected
    config = tmp_path / "strict.yaml"
    config.write_text("pipeline:\n  near_duplicate_threshold: 0.1\n")
    before = fake_server.request_count
    run_cli(*args, "-c", str(config))
    sft, rejected = _accounting(out)
    assert rejected and not set(sft) & set(rejected)  # every question in exactly one of the two files
    assert len(sft) + len(rejected) == 18 and len(set(sft)) == len(sft)
    assert fake_server.request_count == before  # fewer records; nothing to ask the model


def test_retried_round_one_flows_into_round_two(tmp_path, fake_server):
    failing = {"on": True}

    def flaky_critic(body):
        prompt = body["messages"][-1]["content"]
        if failing["on"] and "[Strength Start]" in prompt:
            return {"status": 400, "error": "critic unavailable"}
        return respond(body)

    fake_server.responder = flaky_critic
    out = tmp_path / "out"
    args = ["run", "-o", str(out), "--leaves", "1", "--tasks", "view", *server_args(fake_server)]
    # Every critique failed: the run ends with an error (exit 1) that says how to send them again.
    first = CliRunner().invoke(app, [*args, "--rounds", "1"])
    assert first.exit_code == 1 and "critique_1: 3 of 3 items failed" in first.output
    assert "critic unavailable" in first.output and "--retry-failed" in first.output
    rows = read_jsonl(out / "sft.jsonl")
    assert all(len(r["meta"]["versions"]) == 1 and r["meta"]["refine_notes"] for r in rows)
    failing["on"] = False
    assert CliRunner().invoke(app, [*args, "--rounds", "2"]).exit_code == 1  # round 1's failures still stand
    run_cli(*args, "--rounds", "2", "--retry-failed")
    rows = read_jsonl(out / "sft.jsonl")
    assert rows and all([v["round"] for v in r["meta"]["versions"]] == [0, 1, 2] for r in rows)
    assert all(not r["meta"].get("refine_notes") for r in rows)
