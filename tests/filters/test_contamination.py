"""Benchmark decontamination: the file formats benchmarks ship in, the n-gram rule, and bad files."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings, strategies as st

from condor.errors import ConfigError
from condor.filters.contamination import NGRAM, BenchmarkIndex, Decontaminate, load_index, read_prompts

LONG = ("Compose an engaging travel blog post about a recent trip to Hawaii, highlighting cultural "
        "experiences and must-see attractions.")


def record(question: str, **more) -> dict:
    return {"id": "en/abc/view/medium", "question": question, "tag_path": ["Travel", "Islands", "Hawaii"], **more}


def index_of(tmp_path, name: str, text: str) -> BenchmarkIndex:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_index([str(path)])


def test_mt_bench_turns_are_read_and_a_13_word_overlap_is_named_with_file_and_line(tmp_path):
    lines = [json.dumps({"question_id": 80, "category": "writing", "turns": ["Write a haiku about rain."]}),
             json.dumps({"question_id": 81, "category": "writing", "turns": [LONG, "Rewrite your previous response."]})]
    gate = Decontaminate(index_of(tmp_path, "question.jsonl", "\n".join(lines) + "\n"))
    copied = "For my class: " + " ".join(LONG.split()[:13]) + " and keep it short?"
    verdict = gate.check(record(copied))
    assert verdict.reason == "contamination"
    assert "question.jsonl:2" in verdict.detail and "13 words" in verdict.detail
    # Twelve words in a row are not enough for a long prompt.
    assert gate.check(record("Please " + " ".join(LONG.split()[:12]) + " today.")) == record(
        "Please " + " ".join(LONG.split()[:12]) + " today.")


def test_arena_hard_turn_objects_and_v2_prompts_are_read(tmp_path):
    v1 = json.dumps({"question_id": "q1", "cluster": "x", "turns": [{"content": LONG}]})
    v2 = json.dumps({"uid": "u2", "category": "hard_prompt", "prompt": "Explain how a heap differs from a binary search tree in practice."})
    path = tmp_path / "arena.jsonl"
    path.write_text(v1 + "\n\n" + v2 + "\n", encoding="utf-8")
    assert [line for line, _ in read_prompts(path)] == [1, 3]
    gate = Decontaminate(load_index([str(path)]))
    assert gate.check(record("explain how a HEAP differs from a binary-search tree in practice!")).reason == "contamination"


def test_alpaca_eval_json_array_is_read_by_position(tmp_path):
    items = [{"instruction": "What are the names of some famous actors that started their careers on Broadway?",
              "output": "...", "generator": "gpt4", "dataset": "helpful_base"},
             {"instruction": LONG, "output": "...", "generator": "gpt4", "dataset": "koala"}]
    gate = Decontaminate(index_of(tmp_path, "alpaca_eval.json", json.dumps(items, indent=2)))
    verdict = gate.check(record(LONG.upper()))
    assert verdict.reason == "contamination" and "alpaca_eval.json:2" in verdict.detail


def test_plain_lines_and_short_prompts_must_appear_whole(tmp_path):
    index = index_of(tmp_path, "prompts.txt", "Name three primary colors please\nhi there\n")
    assert index.prompts == 2 and index.skipped == 1  # "hi there" is under five words
    gate = Decontaminate(index)
    assert gate.check(record("Quick one: name three primary colors please.")).reason == "contamination"
    assert isinstance(gate.check(record("Name three primary colors of light.")), dict)  # not the whole prompt


def test_chinese_is_matched_character_by_character(tmp_path):
    prompt = "请写一篇关于夏威夷旅行的博客文章，重点介绍当地的文化体验和必去景点。"
    gate = Decontaminate(index_of(tmp_path, "zh.jsonl", json.dumps({"prompt": prompt}, ensure_ascii=False) + "\n"))
    assert gate.check(record("我想要" + prompt[:NGRAM] + "可以吗")).reason == "contamination"
    assert isinstance(gate.check(record("我想要" + prompt[: NGRAM - 1] + "可以吗")), dict)


def test_normalisation_ignores_case_punctuation_and_full_width_forms(tmp_path):
    gate = Decontaminate(index_of(tmp_path, "p.txt", "Ｗｈａｔ is the capital city of Australia today\n"))
    assert gate.check(record("what IS the capital-city of australia, today?")).reason == "contamination"


def test_the_fingerprint_follows_the_prompts_so_a_changed_file_redoes_the_step(tmp_path):
    first = index_of(tmp_path, "a.txt", "Name three primary colors please\n").fingerprint
    same = index_of(tmp_path, "b.txt", "Name three primary colors please\n").fingerprint
    other = index_of(tmp_path, "c.txt", "Name four primary colors please\n").fingerprint
    assert first == same != other


@pytest.mark.parametrize("content, message", [
    (b"\xff\xfe not text", "not UTF-8"),
    (b'[{"instruction": "x",\n oops', "line 2: not a valid JSON array"),
])
def test_bad_benchmark_files_are_one_line_errors_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bench.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as caught:
        load_index([str(path)])
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_benchmark_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="cannot read benchmark file"):
        load_index([str(tmp_path / "nope.jsonl")])


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_matching_never_fails_on_any_text(text):
    index = BenchmarkIndex()
    index.add(LONG, "b:1")
    found = index.match(text)
    assert found is None or found == ("b:1", NGRAM)
