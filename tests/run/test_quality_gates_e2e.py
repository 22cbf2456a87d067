"""Quality gates end to end against the local server: degenerate replies, decontamination, --target."""

from __future__ import annotations

import json
import re
from pathlib import Path

from condor_responder import respond
from typer.testing import CliRunner

from condor.cli.main import app
from condor.filters.degenerate import degenerate


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def server_args(server, *more):
    return ["--base-url", server.base_url, "--model", "fake-model", "--quiet", *more]


def run_cli(*args):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_degenerate_replies_never_reach_the_dataset(tmp_path, fake_server):
    calls = {"n": 0}

    def sloppy(body):
        calls["n"] += 1
        prompt = body["messages"][-1]["content"]
        meta = "The new answer has been made more concise and accurate."  # every refinement is meta-talk
        if "improved_answer" in json.dumps(body.get("response_format") or {}):
            return json.dumps({"improved_answer": meta})
        if "[Improved Answer Start]" in prompt:
            return f"[Improved Answer Start]{meta}[Improved Answer End]"
        if "Knowledge tag" not in prompt and "[Strength Start]" not in prompt and calls["n"] % 3 == 0:
            return "Improved_answer"  # a third of the answers are a bare label
        return respond(body)

    fake_server.responder = sloppy
    out = tmp_path / "out"
    result = run_cli("run", "-o", str(out), "--leaves", "2", "--tasks", "view", *server_args(fake_server))
    rows = read_jsonl(out / "sft.jsonl")
    assert rows
    for row in rows:
        answer = row["messages"][1]["content"]
        assert degenerate(answer) is None and "Improved_answer" not in answer
        # The meta-talk refinement never replaced the answer; the record says why.
        assert row["meta"]["chosen"]["version"] == 0 and len(row["meta"]["versions"]) == 1
        assert any(n["reason"].startswith("refinement_") for n in row["meta"]["refine_notes"]), row["meta"]
    assert "kept the previous version: refinement_meta_commentary" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["refine_1"]["reasons"].get("refinement_meta_commentary", 0) == len(rows)


def test_decontamination_drops_questions_from_a_benchmark(tmp_path, fake_server):
    fake_server.responder = respond
    benchmark = tmp_path / "mt_bench.jsonl"
    # Every medium question the scripted model writes begins with this sentence.
    benchmark.write_text(json.dumps({"question_id": 81, "turns": [
        "I run a small club and need to compare two approaches to"]}) + "\n")
    out = tmp_path / "out"
    run_cli("void", "-o", str(out), "--leaves", "2", "--tasks", "view", "--decontaminate", str(benchmark),
            *server_args(fake_server))
    rejected = [r for r in read_jsonl(out / "rejected.jsonl") if r["reason"] == "contamination"]
    assert len(rejected) == 2 and all("mt_bench.jsonl:1" in r["detail"] for r in rejected)
    assert all("small club" not in r["messages"][0]["content"] for r in read_jsonl(out / "void.jsonl"))


def test_target_gives_exactly_n_rows_and_resumes_for_free(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    args = ["run", "-o", str(out), "--target", "10", "--tasks", "view", "--rounds", "0", *server_args(fake_server)]
    run_cli(*args)
    rows = read_jsonl(out / "sft.jsonl")
    assert len(rows) == 10 and len({r["meta"]["id"] for r in rows}) == 10
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"]["kept"] >= 10 and manifest["target"]["draws"] >= 1
    before = fake_server.request_count
    run_cli(*args)
    assert fake_server.request_count == before and read_jsonl(out / "sft.jsonl") == rows


def test_target_stops_at_the_budget_and_says_how_short(tmp_path, fake_server):
    fake_server.responder = lambda body: "Improved_answer"  # nothing ever passes
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "-o", str(out), "--target", "5", "--tasks", "view", "--rounds", "0",
                                      "--max-requests", "20", *server_args(fake_server)])
    # Nothing came through: the run says why and ends with exit code 1.
    assert result.exit_code == 1 and "no rows came through: every item was rejected" in result.output, result.output
    assert re.search(r"target 5 rows: 0 made after \d+ requests \(budget 20\); 5 short", result.output)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["target"]["requests"] >= 20 and manifest["target"]["kept"] == 0
    before = fake_server.request_count
    CliRunner().invoke(app, ["run", "-o", str(out), "--target", "5", "--tasks", "view", "--rounds", "0",
                             "--max-requests", "20", *server_args(fake_server)])
    assert fake_server.request_count == before  # the budget holds across reruns
