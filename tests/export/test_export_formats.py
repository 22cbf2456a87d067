"""Every export format, read back by the library that consumes it: datasets and TRL's own preparation."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import condor
from condor.cli.main import app
from condor.export.build import ExportError


def rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_messages_sharegpt_and_alpaca_are_read_by_datasets(plain_run, tmp_path):
    from datasets import load_dataset

    for fmt, columns in (("messages", {"messages", "meta"}), ("sharegpt", {"id", "conversations", "meta"}),
                         ("alpaca", {"id", "instruction", "input", "output", "domain", "task", "difficulty", "language"})):
        result = condor.export_dataset(plain_run, fmt, tmp_path / fmt)
        assert result.rows == {"train": 36} and result.files["train"].name == "train.jsonl"
        data = load_dataset("json", data_files=str(result.files["train"]), split="train")
        assert set(data.column_names) == columns and len(data) == 36
        # The card's `configs` make the directory itself loadable, splits and all.
        assert len(load_dataset(str(tmp_path / fmt), split="train")) == 36
    final = condor.read_run(plain_run).final_records()
    alpaca = rows(tmp_path / "alpaca" / "train.jsonl")
    assert [r["output"] for r in alpaca] == [r["answer"] for r in final]


def test_sft_exports_go_through_trls_sft_preparation(plain_run, tmp_path, trl_parts):
    from datasets import load_dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer, model_dir = trl_parts
    for fmt in ("messages", "sharegpt"):
        path = condor.export_dataset(plain_run, fmt, tmp_path / fmt).files["train"]
        data = load_dataset("json", data_files=str(path), split="train")
        trainer = SFTTrainer(model=str(model_dir), processing_class=tokenizer, train_dataset=data,
                             args=SFTConfig(output_dir=str(tmp_path / "trl"), report_to=[], use_cpu=True, max_length=256))
        prepared = trainer.train_dataset
        assert len(prepared) == 36 and "input_ids" in prepared.column_names
        # The tokenizer is uncased: the rendered conversation holds the question and then the answer.
        text = tokenizer.decode(prepared[0]["input_ids"]).replace(" ", "")
        first = data[0]["messages" if fmt == "messages" else "conversations"]
        question, answer = (turn.get("content", turn.get("value")).lower().replace(" ", "") for turn in first)
        assert question[:40] in text and answer[:40] in text and text.index(question[:40]) < text.index(answer[:40])


def test_parquet_and_hf_are_read_by_datasets(plain_run, tmp_path):
    from datasets import load_dataset, load_from_disk

    parquet = condor.export_dataset(plain_run, "parquet", tmp_path / "pq", test_size=0.25)
    data = load_dataset("parquet", data_files={k: str(p) for k, p in parquet.files.items()})
    assert {k: len(v) for k, v in data.items()} == parquet.rows and sum(parquet.rows.values()) == 36
    row = data["train"][0]
    assert row["messages"][0]["role"] == "user" and isinstance(row["tag_path"], list)
    assert json.loads(row["meta"])["id"] == row["id"]

    saved = condor.export_dataset(plain_run, "hf", tmp_path / "hf", test_size=0.25)
    loaded = load_from_disk(str(tmp_path / "hf"))
    assert {k: len(v) for k, v in loaded.items()} == saved.rows == parquet.rows
    assert set(loaded["test"]["id"]) == set(data["test"]["id"])
    assert (tmp_path / "hf" / "README.md").is_file()
    # Exporting again into the same directory replaces the earlier dataset.
    again = condor.export_dataset(plain_run, "hf", tmp_path / "hf")
    assert set(load_from_disk(str(tmp_path / "hf"))) == {"train"} and again.rows == {"train": 36}


def test_filters_and_a_split_by_leaf(plain_run, tmp_path):
    result = condor.export_dataset(plain_run, "messages", tmp_path / "f", language="en", difficulty=["easy", "hard"])
    kept = rows(result.files["train"])
    assert len(kept) == 12 and {r["meta"]["language"] for r in kept} == {"en"}
    assert {r["meta"]["difficulty"] for r in kept} == {"easy", "hard"}
    assert result.dropped == {"language": 18, "difficulty": 6}

    split = condor.export_dataset(plain_run, "messages", tmp_path / "s", test_size=0.3, seed=3)
    train, test = rows(split.files["train"]), rows(split.files["test"])
    assert len(train) + len(test) == 36 and 6 <= len(test) <= 18

    def leaves(part):
        return {(r["meta"]["language"], tuple(r["meta"]["tag_path"])) for r in part}

    assert leaves(train) and leaves(test) and not leaves(train) & leaves(test)
    again = condor.export_dataset(plain_run, "messages", tmp_path / "s2", test_size=0.3, seed=3)
    assert rows(again.files["test"]) == test  # the same seed gives the same split


def test_min_score_needs_grades(plain_run, judged_run, tmp_path):
    with pytest.raises(ExportError, match="condor judge --in"):
        condor.export_dataset(plain_run, "messages", tmp_path / "x", min_score=7)
    result = condor.export_dataset(judged_run, "messages", tmp_path / "y", min_score=7)
    kept = rows(result.files["train"])
    assert kept and all(r["meta"]["chosen"]["version"] == 1 for r in kept)
    assert sum(result.dropped.values()) + len(kept) == 36


def test_the_cli_writes_a_format_and_keeps_the_default_export(plain_run, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(app, ["export", str(plain_run), "--format", "alpaca", "-o", str(out), "--task", "view"])
    assert result.exit_code == 0, result.output
    assert f"train: {out / 'train.jsonl'} (18 rows)" in result.output and "card:" in result.output
    refused = CliRunner().invoke(app, ["export", str(plain_run), "--task", "view"])
    assert refused.exit_code == 2 and "add --format" in refused.output
    unknown = CliRunner().invoke(app, ["export", str(plain_run), "--format", "csv", "-o", str(out)])
    assert unknown.exit_code == 2 and "unknown export format 'csv'" in unknown.output


def test_push_to_hub_says_what_to_do_when_offline_or_logged_out(plain_run, tmp_path, monkeypatch):
    offline = CliRunner().invoke(app, ["export", str(plain_run), "--format", "hf", "-o", str(tmp_path / "h"),
                                       "--push-to-hub", "someone/condor-data"])
    assert offline.exit_code == 2 and "offline mode is on" in offline.output and "Traceback" not in offline.output
    wrong = CliRunner().invoke(app, ["export", str(plain_run), "--format", "messages", "--push-to-hub", "a/b"])
    assert wrong.exit_code == 2 and "use it with --format hf" in wrong.output

    from huggingface_hub import constants

    # Online but without a token: refused before any request is made.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(ExportError, match="not logged in"):
        condor.export_dataset(plain_run, "hf", tmp_path / "h2", push_to_hub="someone/condor-data")
