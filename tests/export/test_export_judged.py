"""DPO pairs only where the judge agreed in both orders, critique records labelled by the judge, the card."""

from __future__ import annotations

import json

import yaml

import condor


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def refined_records(run):
    return [r for r in condor.read_run(run).final_records() if r["chosen"]["version"] != 0
            and r["versions"][0]["answer"].strip() != r["answer"].strip()]


def test_dpo_pairs_come_only_from_verdicts_agreed_in_both_orders(judged_run, tmp_path, trl_parts):
    from datasets import load_dataset
    from trl import DPOConfig, DPOTrainer

    result = condor.export_dataset(judged_run, "dpo", tmp_path / "dpo")
    pairs = rows(result.files["train"])
    assert len(pairs) == len(refined_records(judged_run)) > 0
    for pair in pairs:
        meta = pair["meta"]
        assert meta["pairing"] == "judge_both_orders"
        assert [v["first"] for v in meta["verdicts"]] == ["a", "b"] and {v["winner"] for v in meta["verdicts"]} == {"b"}
        assert meta["margin"] == 2.0 and meta["scores"] == {"original": 6.0, "chosen": 8.0}
        assert pair["chosen"][0]["content"].startswith("Improved version")
    tokenizer, model_dir = trl_parts
    data = load_dataset("json", data_files=str(result.files["train"]), split="train")
    trainer = DPOTrainer(model=str(model_dir), processing_class=tokenizer, train_dataset=data,
                         args=DPOConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, max_length=256))
    prepared = trainer.train_dataset
    assert len(prepared) == len(pairs)
    assert {"prompt_ids", "chosen_ids", "rejected_ids"} <= set(prepared.column_names)
    assert all(row["chosen_ids"] != row["rejected_ids"] for row in prepared)


def test_a_first_position_judge_makes_no_pair(biased_run, tmp_path):
    result = condor.export_dataset(biased_run, "dpo", tmp_path / "dpo")
    assert result.rows == {"train": 0}
    assert result.skipped["tie"] == len(refined_records(biased_run))
    card = (tmp_path / "dpo" / "README.md").read_text()
    assert "position consistency 0.0%" in card and "in both orders" in card


def test_min_margin_on_grades(judged_run, tmp_path):
    assert condor.export_dataset(judged_run, "dpo", tmp_path / "a", min_margin=2).rows["train"] > 0
    strict = condor.export_dataset(judged_run, "dpo", tmp_path / "b", min_margin=2.5)
    assert strict.rows == {"train": 0} and strict.skipped["below_min_margin"] == len(refined_records(judged_run))


def test_without_a_judge_dpo_falls_back_and_the_card_says_so(plain_run, tmp_path):
    result = condor.export_dataset(plain_run, "dpo", tmp_path / "dpo")
    pairs = rows(result.files["train"])
    assert len(pairs) == len(rows(plain_run / "preference.jsonl"))
    assert {p["meta"]["pairing"] for p in pairs} == {"refined_over_original"}
    assert any("not judged in both orders" in note for note in result.notes)
    assert "fall back to the refined answer over the original" in (tmp_path / "dpo" / "README.md").read_text()


def test_critique_records_are_labelled_by_whether_the_refinement_won(judged_run, plain_run, tmp_path):
    from datasets import load_dataset

    judged = condor.export_dataset(judged_run, "critique", tmp_path / "judged")
    records = rows(judged.files["train"])
    assert len(records) == 36  # one critique round per record
    for row in records:
        assert row["question"] and row["answer"] and row["critique"].startswith("Strengths:") and row["refined_answer"]
        refined = row["refined_answer"].strip() != row["answer"].strip()
        assert row["label"] == ("helpful" if refined else "not_helpful")
        assert row["label_source"] in ("pairwise", "grades")
    assert len(load_dataset("json", data_files=str(judged.files["train"]), split="train")) == 36
    plain = rows(condor.export_dataset(plain_run, "critique", tmp_path / "plain").files["train"])
    assert {r["label"] for r in plain} == {"unjudged"} and {r["won"] for r in plain} == {None}


def test_the_card_tells_how_the_data_was_made(judged_run, tmp_path):
    condor.export_dataset(judged_run, "messages", tmp_path / "m", test_size=0.25, command="condor export RUN --format messages")
    text = (tmp_path / "m" / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["language"] == ["en", "zh"] and header["task_categories"] == ["text-generation"]
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "train.jsonl"}, {"split": "test", "path": "test.jsonl"}]
    for expected in ("## How the data was made", "condor run -o", "--rounds 1", "condor export RUN --format messages",
                     "| answer | answerer |", "| judge_pairwise | judge |", "By domain", "By task", "By difficulty",
                     "By language", "Leaf coverage: 6 of the tree's", "## Rejections", "## Tokens per stage",
                     "| judge_grade |", "Grades (1-10", "wins 100.0%", "Split by leaf", "en: `en` version"):
        assert expected in text, expected
