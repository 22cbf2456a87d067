"""Training rows: conversions, row-by-row checks with reasons, and every input kind (file, export, run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from judge.verdicts import make_run

from condor.train.data import TrainDataError, dpo_row, load_training_data, read_rows, sft_row


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_sft_rows_become_prompt_and_completion_so_the_loss_is_on_the_answer_only():
    row = sft_row({"messages": [{"role": "system", "content": "Be brief."}, *chat("Q?", "A.")["messages"]]})
    assert row == {"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q?"}],
                   "completion": [{"role": "assistant", "content": "A."}]}
    assert sft_row({"question": "Q?", "answer": "A."}) == sft_row(chat("Q?", "A."))


@pytest.mark.parametrize("data, reason", [
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no_user_then_assistant"),
    ({"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]}, "no_user_then_assistant"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}, "empty_message"),
    ({"messages": [{"role": "wizard", "content": "q"}]}, "bad_role"),
    ({"messages": "text"}, "no_user_then_assistant"),
    ({"messages": []}, "not_a_message_list"),
    ({"question": "q", "answer": None}, "empty_message"),
    ({"text": "plain"}, "no_messages"),
])
def test_unusable_sft_rows_say_why(data, reason):
    assert sft_row(data) == reason


def test_dpo_rows_accept_strings_and_refuse_identical_sides():
    row = dpo_row({"prompt": "Q?", "chosen": "good", "rejected": "bad"})
    assert row == {"prompt": [{"role": "user", "content": "Q?"}], "chosen": [{"role": "assistant", "content": "good"}],
                   "rejected": [{"role": "assistant", "content": "bad"}]}
    assert dpo_row({"prompt": "Q?", "chosen": "same ", "rejected": "same"}) == "chosen_equals_rejected"
    assert dpo_row({"prompt": "Q?", "chosen": "x"}) == "not_a_preference_pair"
    assert dpo_row({"prompt": [{"role": "assistant", "content": "Q?"}], "chosen": "a", "rejected": "b"}) == "no_user_then_assistant"


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=12))
def test_any_json_value_is_a_row_or_a_reason(value):
    for convert in (sft_row, dpo_row):
        data = {"messages": value, "prompt": value, "chosen": value, "rejected": value, "question": value}
        out = convert(data)
        assert isinstance(out, (str, dict))


def test_a_file_with_bad_lines_keeps_the_good_ones_and_counts_the_rest(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [chat("Q1?", "A1."), "not json", "[1, 2]", "", chat("Q2?", "A2."),
                                              {"messages": [{"role": "user", "content": "x"}]}])
    data = read_rows(path, sft_row)
    assert len(data.rows) == 2
    assert dict(data.skipped) == {"invalid_json": 1, "not_an_object": 1, "no_user_then_assistant": 1}
    assert len(data.fingerprint()) == 16 and data.fingerprint() != read_rows(write_jsonl(tmp_path / "e.jsonl", [chat("Q1?", "A1.")]), sft_row).fingerprint()


def test_nothing_usable_is_one_clear_error(tmp_path):
    with pytest.raises(TrainDataError, match=r"no usable messages rows \(1 invalid_json\)"):
        load_training_data(write_jsonl(tmp_path / "bad.jsonl", ["{oops"]), "sft", tmp_path / "w")
    with pytest.raises(TrainDataError, match="no usable prompt/chosen/rejected pairs"):
        load_training_data(write_jsonl(tmp_path / "sft.jsonl", [chat("Q?", "A.")]), "dpo", tmp_path / "w")
    with pytest.raises(TrainDataError, match="no such file"):
        load_training_data(tmp_path / "missing.jsonl", "sft", tmp_path / "w")
    with pytest.raises(TrainDataError, match="neither a run directory"):
        load_training_data(tmp_path, "sft", tmp_path / "w")
    (tmp_path / "latin1.jsonl").write_bytes(b'{"question": "caf\xe9"}\n')
    with pytest.raises(TrainDataError, match="not UTF-8"):
        load_training_data(tmp_path / "latin1.jsonl", "sft", tmp_path / "w")


def test_a_run_directory_is_exported_first_and_the_export_is_kept(tmp_path):
    run = make_run(tmp_path / "run")
    sft = load_training_data(run, "sft", tmp_path / "model" / "data")
    assert len(sft.rows) == 6 and (tmp_path / "model" / "data" / "train.jsonl").is_file()
    assert (tmp_path / "model" / "data" / "README.md").is_file()  # the dataset card goes along
    dpo = load_training_data(run, "dpo", tmp_path / "model2" / "data")
    assert dpo.rows and all(r["chosen"][0]["content"].startswith("Improved") for r in dpo.rows)
    assert any("no pairwise judge results" in note for note in dpo.notes)
    # An export directory is read through its train.jsonl.
    again = load_training_data(tmp_path / "model" / "data", "sft", tmp_path / "unused")
    assert again.rows == sft.rows
