"""On topic: questions scored against their tag path, lexically and with the offline MiniLM model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from condor.filters.relevance import THRESHOLDS, OnTopic, TopicScorer, lexical_score, make_scorer

CASH = ["Finance", "Accounting", "Cash flow statements"]


def record(question: str, tag_path=CASH, language="en") -> dict:
    return {"id": "x", "question": question, "tag_path": tag_path, "language": language}


def test_a_question_that_names_its_tag_scores_high_and_one_that_ignores_it_scores_zero():
    assert lexical_score("How do I read the cash flow statement of a small bakery?", CASH) >= 0.5
    assert lexical_score("The story will have a beginning, middle, and end.", CASH) == 0.0


def test_word_forms_meet_through_their_first_letters():
    assert lexical_score("What does an accountant put in a statement of cash flows?", CASH) > 0.5


def test_chinese_is_scored_by_character_pairs():
    tag = ["金融", "会计", "现金流量表"]
    assert lexical_score("小面包店的现金流量表应该怎么看？", tag) > 0.3
    assert lexical_score("故事要有开头、中间和结尾。", tag) == 0.0


def test_a_tag_made_only_of_symbols_says_nothing_and_passes():
    assert lexical_score("anything at all", ["#", "++", "42"]) == 1.0


def test_the_gate_rejects_off_topic_questions_with_score_threshold_and_scorer():
    gate = OnTopic(TopicScorer())
    off = gate.check(record("The story will have a beginning, middle, and end."))
    assert off.reason == "off_topic"
    assert "0.00" in off.detail and f"{THRESHOLDS[('lexical', 'en')]:.2f}" in off.detail and "lexical" in off.detail
    kept = gate.check(record("Why do cash flow statements matter more than profit for a startup?"))
    assert kept["relevance"]["scorer"] == "lexical" and kept["relevance"]["score"] > 0.3


def test_a_configured_threshold_replaces_the_calibrated_one():
    question = "What should a cash budget include?"  # one of the tag's five stems
    assert isinstance(OnTopic(TopicScorer()).check(record(question)), dict)
    assert OnTopic(TopicScorer(), threshold=0.5).check(record(question)).reason == "off_topic"


def test_records_without_a_tag_path_are_not_judged():
    assert isinstance(OnTopic(TopicScorer()).check(record("Anything", tag_path=[])), dict)


def test_relevance_modes():
    assert make_scorer("off") is None
    assert type(make_scorer("lexical")) is TopicScorer


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.lists(st.text(max_size=30), max_size=4))
def test_lexical_scores_stay_between_zero_and_one(question, tag_path):
    assert 0.0 <= lexical_score(question, tag_path) <= 1.0


@pytest.mark.slow
@pytest.mark.embeddings
def test_minilm_separates_on_topic_from_crossed_questions_and_scores_chinese_lexically():
    pytest.importorskip("sentence_transformers")
    scorer = make_scorer("embeddings")
    assert scorer.kind == "minilm"
    gate = OnTopic(scorer)
    on = gate.check(record("My bakery makes a profit but never has money in the bank: what should I look for in its cash flow statement?"))
    assert on["relevance"]["scorer"] == "minilm" and on["relevance"]["score"] >= THRESHOLDS[("minilm", "en")]
    crossed = gate.check(record("Write a short poem about a heron standing in a frozen river at dawn."))
    assert crossed.reason == "off_topic" and "minilm" in crossed.detail
    chinese = gate.check(record("小面包店的现金流量表应该怎么看？", ["金融", "会计", "现金流量表"], language="zh"))
    assert chinese["relevance"]["scorer"] == "lexical"
