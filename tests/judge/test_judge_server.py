"""``condor judge`` against the local server with scripted verdicts: position swap, intervals, resume, CLI."""

from __future__ import annotations

import json
import shutil

import pytest
from fake_server import FakeChatServer
from judge.verdicts import judge, judge_config, make_run, prefers_first, prefers_longer, prefers_refined, prefers_second
from typer.testing import CliRunner

from condor.cli.main import app
from condor.judge.results import GRADE_STEP, PAIRWISE_STEP, JudgeIndex, read_summary
from condor.judge.sources import JudgeInputError
from condor.judge.stats import wilson
from condor.run.records import RunReader


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A refined run: 2 leaves x 1 task x 3 difficulties, one refinement round."""
    return make_run(tmp_path_factory.mktemp("judge") / "run")


@pytest.fixture
def run(base_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    return copy


def test_a_judge_that_always_prefers_the_first_position_gives_only_ties(run):
    for biased in (prefers_first, prefers_second):
        shutil.rmtree(run / "stages" / "judge_pairwise", ignore_errors=True)
        with FakeChatServer(responder=biased) as server:
            result, _ = judge(server, run=run, grade=False)
        stats = result.pairwise
        assert stats.pairs == 6 and stats.ties == 6 and stats.b_wins == stats.a_wins == 0
        assert stats.position_consistency.value == 0.0
        assert stats.tie_rate == wilson(6, 6)


def test_a_consistent_judge_counts_wins_with_intervals_and_resumes_with_no_calls(run):
    with FakeChatServer(responder=prefers_refined) as server:
        result, sent = judge(server, run=run)
        assert sent == 6 * 2 + 6 * 2  # grades of two versions, and two orders, for each of the 6 records
        again, resent = judge(server, run=run)
    assert resent == 0 and again.summary["pairwise"] == result.summary["pairwise"]
    pairs = result.pairwise
    assert (pairs.pairs, pairs.b_wins, pairs.position_consistency.value) == (6, 6, 1.0)
    assert pairs.b_win_rate == wilson(6, 6) and pairs.b_win_rate.low == pytest.approx(0.6097, abs=1e-3)
    grades = result.grades
    assert grades.original.value == 6 and grades.final.value == 8 and grades.gain.value == 2 and grades.improved == 6
    summary = read_summary(run)
    assert summary["pairwise"]["pairs"] == 6 and summary["judge_model"].endswith("judge-model")
    reader = RunReader(run)
    assert {GRADE_STEP, "judge_pairs", PAIRWISE_STEP} <= set(reader.steps)
    assert reader.final_step == "select"  # the pipeline's own result is untouched
    index = JudgeIndex(reader)
    record = reader.final_records()[0]
    assert index.scores(record) == {0: 6.0, 1: 8.0}
    assert index.verdict(record, record["versions"][0]["answer"], record["answer"])["winner"] == "b"
    # A verdict is only ever matched to the very text that was judged.
    assert index.verdict(record, "another original", record["answer"]) is None


def test_a_separate_judge_model_gets_every_judge_call(run):
    with FakeChatServer(responder=prefers_refined) as pipeline_server, FakeChatServer(responder=prefers_refined) as judge_server:
        cfg = judge_config(pipeline_server, **{"roles": {"judge": {"backend": "openai", "base_url": judge_server.base_url,
                                                                     "model": "big-judge"}}})
        from condor.api import judge_runs

        result = judge_runs(cfg, run=run)
        assert pipeline_server.request_count == 0 and judge_server.request_count == 24
        assert {body["model"] for body in judge_server.request_log} == {"big-judge"}
    assert result.summary["judge_model"].endswith("big-judge")


def _write(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_two_datasets_are_compared_on_their_shared_questions_from_the_cli(tmp_path):
    questions = [f"Question number {i}: how would you explain topic {i} to a friend?" for i in range(6)]
    a = _write(tmp_path / "a.jsonl", [{"question": q, "answer": "Short reply."} for q in questions[:5]])
    b = _write(tmp_path / "b.jsonl", [{"messages": [{"role": "user", "content": "  " + q.upper() + " "},
                                                    {"role": "assistant", "content": "A much longer and more detailed reply " * (i + 1)}]}
                                      for i, q in enumerate(questions[1:])])
    out = tmp_path / "judged"
    with FakeChatServer(responder=prefers_longer) as server:
        command = ["judge", "--a", str(a), "--b", str(b), "-o", str(out), "--quiet", "--base-url", server.base_url,
                   "--model", "judge-model"]
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 0, result.output
        first = server.request_count
        again = CliRunner().invoke(app, command)
        assert again.exit_code == 0 and server.request_count == first == 8  # 4 shared questions, two orders each
    assert "wins 100.0%" in result.output and "position consistency 100.0%" in result.output
    summary = json.loads((out / "judge.json").read_text())
    assert summary["comparison"] == {**summary["comparison"], "shared": 4, "only_a": 1, "only_b": 1}
    assert summary["pairwise"]["b_wins"] == 4 and summary["pairwise"]["mean_length_difference"] > 0
    assert summary["pairwise"]["sides"] == {"a": str(a), "b": str(b)}


def test_original_against_final_of_one_run_by_version(run, tmp_path):
    with FakeChatServer(responder=prefers_refined) as server:
        result, sent = judge(server, a=f"{run}@original", b=f"{run}@1", out=tmp_path / "vr")
    assert sent == 12 and result.pairwise.b_wins == 6


@pytest.mark.parametrize("options,message", [
    ({"a": "x.jsonl"}, "both --a and --b"),
    ({"run": "RUN", "a": "x"}, "not both"),
    ({}, "--in RUN"),
])
def test_wrong_combinations_are_refused(options, message, tmp_path):
    options = {k: (tmp_path / v if k == "run" else v) for k, v in options.items()}
    with FakeChatServer() as server, pytest.raises(JudgeInputError, match=message):
        judge(server, **options)


def test_judging_something_that_is_not_a_run_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["judge", "--in", str(tmp_path), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    assert result.exit_code == 2 and "not a Condor run directory" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["judge", "--a", str(tmp_path / "missing.jsonl"), "--b", str(tmp_path / "x.jsonl"),
                                      "-o", str(tmp_path / "o"), "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    assert result.exit_code == 2 and "no such run directory or file" in result.output
