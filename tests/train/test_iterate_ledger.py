"""The iteration loop's bookkeeping, without a model: the gate, the ledger, the table, held-out rows."""

from __future__ import annotations

import json

import pytest

from condor.config import RunConfig
from condor.llm.settings import OpenAISettings
from condor.train.heldout import choose_heldout, without_heldout
from condor.train.iterate import fixed_judge, policy_backend, sized
from condor.train.ledger import IterateError, decide, load_ledger, render_table, save_ledger, settings_key
from condor.train.settings import IterateSettings


def rate(value, low, high):
    return {"value": value, "low": low, "high": high}


def test_the_default_gate_wants_the_whole_interval_above_half():
    settings = IterateSettings()
    assert decide(settings, rate(0.8, 0.55, 0.93)) == (True, "win rate 80.0% [55.0, 93.0]: interval entirely above 50%")
    promoted, reason = decide(settings, rate(0.8, 0.45, 0.93))
    assert not promoted and "not entirely above 50%" in reason
    assert decide(settings, None) == (False, "no judged pairs")


def test_other_rules_and_thresholds():
    assert decide(IterateSettings(gate="rate"), rate(0.51, 0.2, 0.8))[0]
    assert not decide(IterateSettings(gate="rate"), rate(0.5, 0.2, 0.8))[0]
    assert decide(IterateSettings(gate="always"), rate(0.1, 0.0, 0.3))[0]
    assert decide(IterateSettings(gate="always"), None) == (True, "no judged pairs (gate: always)")
    assert not decide(IterateSettings(threshold=0.6), rate(0.7, 0.58, 0.8))[0]


def row(i, promoted, best, pairs=4):
    return {"iteration": i, "trained_from": "base" if i == 1 else f"iter-{i - 1}", "promoted": promoted,
            "best_after": best, "reason": "because", "data": {"train_rows": 10},
            "train": {"first_loss": 2.0, "final_loss": 1.5},
            "eval": {"pairs": pairs, "wins": 3, "ties": 1, "losses": 0, "win_rate": rate(0.875, 0.53, 0.98)}}


def test_the_ledger_names_the_best_model_and_refuses_other_settings(tmp_path):
    key = settings_key(IterateSettings(), RunConfig().model_dump(mode="json"))
    assert key == settings_key(IterateSettings(iterations=5), RunConfig().model_dump(mode="json"))
    assert key != settings_key(IterateSettings(gate="rate"), RunConfig().model_dump(mode="json"))
    ledger = load_ledger(tmp_path, key, None)
    assert ledger.best == "base" and ledger.rows == []
    ledger.rows += [row(1, True, "iter-1"), row(2, False, "iter-1")]
    save_ledger(tmp_path, ledger)
    again = load_ledger(tmp_path, key, None)
    assert again.best == "iter-1" and len(again.rows) == 2
    assert json.loads((tmp_path / "iterate.json").read_text())["best"] == "iter-1"
    with pytest.raises(IterateError, match="made with other settings"):
        load_ledger(tmp_path, "another", None)
    (tmp_path / "iterate.json").write_text("{broken")
    with pytest.raises(IterateError, match="unreadable"):
        load_ledger(tmp_path, key, None)


def test_the_table_has_a_row_per_iteration_and_the_reasons():
    text = render_table([row(1, True, "iter-1"), row(2, False, "iter-1", pairs=0)])
    lines = text.splitlines()
    assert lines[0].startswith("| iteration | trained from | train rows")
    assert lines[2] == ("| 1 | base | 10 | 2.000 -> 1.500 | 4 | 3 / 1 / 0 | 87.5% [53.0, 98.0] | yes | iter-1 |")
    assert lines[3].endswith("| 0 | - | - | no | iter-1 |")
    assert "- iteration 2: because" in text


def record(i, leaf, lang="en"):
    return {"id": f"r{i}", "question": f"Question {i}?", "tag_path": ["D", leaf], "language": lang,
            "task": "view", "difficulty": "easy", "versions": [{"answer": "a"}]}


def test_heldout_questions_come_from_whole_leaves_and_never_from_training():
    records = [record(i, f"leaf{i % 4}") for i in range(12)]
    questions, leaves = choose_heldout(records, 0.3, 50, seed=0)
    assert questions and leaves and len(leaves) < 4
    held = {q["id"] for q in questions}
    assert held == {r["id"] for r in records if f"en:D > {r['tag_path'][1]}" in leaves}
    assert set(questions[0]) == {"id", "question", "language", "tag_path", "task", "difficulty"}
    assert len(choose_heldout(records, 0.3, 2, seed=0)[0]) == 2
    assert choose_heldout([record(1, "only")], 0.3, 50, 0) == ([], [])  # one leaf: nothing can be held out


def test_training_rows_of_heldout_leaves_or_questions_are_dropped():
    def sft(question, leaf):
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "a"}],
                "meta": {"tag_path": ["D", leaf], "language": "en"}}

    dpo = {"prompt": [{"role": "user", "content": "Held  OUT question?"}], "chosen": [], "rejected": [], "meta": {}}
    rows = [sft("q1", "keep"), sft("q2", "held"), dpo, sft("q3", "keep")]
    kept, dropped = without_heldout(rows, {"en:D > held"}, {"held out question?"})
    assert [r.get("messages", [{}])[0].get("content") for r in kept] == ["q1", "q3"] and dropped == 2


def test_the_policy_is_put_into_the_generator_settings():
    settings = IterateSettings()
    assert policy_backend(settings, "/m/iter-1").model == "/m/iter-1"
    assert policy_backend(settings, None).model is None  # the embedded GGUF
    served = IterateSettings(generator=OpenAISettings(base_url="http://127.0.0.1:8000/v1", model="{policy}"))
    assert policy_backend(served, "/m/iter-2").model == "/m/iter-2"
    with pytest.raises(IterateError, match="needs --base-model"):
        policy_backend(served, None)


def test_plan_sizes_and_the_judge_come_from_the_run_config():
    small, notes = sized(RunConfig())
    assert small.pipeline.leaves == 2 and small.pipeline.tasks == ["domain_qa", "daily_chat", "creation"] and notes
    given = RunConfig.model_validate({"pipeline": {"leaves": 5, "tasks": ["view"]}})
    assert sized(given) == (given, [])
    assert fixed_judge(RunConfig()).llm.backend == "embedded"
    judged = RunConfig.model_validate({"roles": {"judge": {"backend": "openai", "base_url": "http://x/v1", "model": "j"}}})
    assert fixed_judge(judged).llm.model == "j"


def test_bad_iterate_settings_are_one_line_errors(tmp_path):
    from typer.testing import CliRunner

    from condor.cli.main import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("gate: sometimes\ntrain: {learning_rate: -1}\n")
    result = CliRunner().invoke(app, ["iterate", "-o", str(tmp_path / "out"), "--settings", str(bad)])
    assert result.exit_code == 2 and "gate" in result.output and "train.learning_rate" in result.output
    assert "Traceback" not in result.output
    (tmp_path / "list.yaml").write_text("- 1\n")
    result = CliRunner().invoke(app, ["iterate", "-o", str(tmp_path / "out"), "--settings", str(tmp_path / "list.yaml")])
    assert result.exit_code == 2 and "must be a mapping" in result.output
    result = CliRunner().invoke(app, ["iterate", "-o", str(tmp_path / "out"), "--method", "ppo"])
    assert result.exit_code == 2 and "method" in result.output
    assert not (tmp_path / "out").exists()
