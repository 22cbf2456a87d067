"""Degenerate-text detectors on realistic bad and good texts, in English and Chinese, and on anything."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings, strategies as st

from condor.filters.degenerate import (
    collapse, degenerate, echo, label_only, list_fragment, loop, meta_commentary, placeholder, thin,
)
from condor.filters.text_gates import DegenerateQuestion

BAD = [
    ("Improved_answer", "placeholder"),
    ("You can go from [feature_1_2] to [feature_1_2_1] in two steps.", "placeholder"),
    ("Dear [Your Name], thank you for the invitation.", "placeholder"),
    ("Our new {{product_name}} will change your mornings.", "placeholder"),
    ("Lorem ipsum dolor sit amet, consectetur adipiscing elit.", "placeholder"),
    ("【此处填写答案】", "placeholder"),
    ("尊敬的[在这里插入姓名]，您好。", "placeholder"),
    ("Improved answer:", "label_only"),
    ("## Steps", "label_only"),
    ("**Final Answer**", "label_only"),
    ("改进后的回答：", "label_only"),
    ("The new answer has been made more concise and accurate.", "meta_commentary"),
    ("This is a new edit of the original answer.", "meta_commentary"),
    ("I have revised the answer to make it clearer and added an example.", "meta_commentary"),
    ("Here is the improved answer:\n", "label_only"),
    ("改进后的回答更加简洁，也更准确。", "meta_commentary"),
    ("这是对原回答的修改。", "meta_commentary"),
    ("我已经修改了回答，使其更加清晰。", "meta_commentary"),
    ("Save money. Save money. Save money. Save money. Spend less.", "loop"),
    ("the the the the the the the end", "loop"),
    (" ".join(["we walk to the park and then"] * 12), "loop"),
    ("我们去公园玩吧" * 14, "loop"),
    ("多喝水。多喝水。多喝水。多喝水。早点睡。", "loop"),
    ("1.2.3.1.1.22.1.1.2.1.2", "no_words"),
    ("5.2.2.1.3, 2021-07-23 16:26:38.713268, 3", "no_words"),
    ("—— ？！ ……", "no_words"),
]

GOOD = [
    "Roses are red,\nviolets are blue.",
    "Yes. Boiling kills most bacteria, so the water is then safe to drink.",
    "No, it isn't safe to leave cooked rice out overnight: Bacillus cereus spores survive cooking.",
    "```python\nfor i in range(3):\n    print('hi')\n    print('hi')\n    print('hi')\n```\nThis prints hi nine times.",
    "| step | time |\n|---|---|\n| mix | 5 min |\n| rest | 5 min |\n| rest | 5 min |",
    "1. Mix the flour.\n2. Mix the water.\n3. Mix the salt.\n4. Bake for 40 minutes.",
    "Here is the improved answer: to bake sourdough you need a starter, flour, water and salt. Mix them, let the "
    "dough rise overnight, shape it and bake it at 230 C for about 40 minutes.",
    "Chorus: la la la.\nVerse one goes here.\nChorus: la la la.\nVerse two is new.\nChorus: la la la.\nThe end.",
    "首先，把面粉和水混合。然后，让面团发酵一夜。最后，在230度烤40分钟。",
    "床前明月光，\n疑是地上霜。",
    "def render(x):\n    return {x_value}\n",
    "Use the template string `{user_name}` in your code and Python fills it in.",
    "A good answer to 'what is 2 + 2?' is simply: 4, because two pairs make four.",
    "x = 2",
    "π ≈ 3.14159",
    "答：42。",
]


@pytest.mark.parametrize("text, reason", BAD)
def test_bad_texts_are_caught_with_their_reason(text, reason):
    finding = degenerate(text)
    assert finding is not None and finding.reason == reason, (text, finding)
    assert finding.detail


@pytest.mark.parametrize("text", GOOD)
def test_good_texts_that_look_suspicious_pass(text):
    assert degenerate(text) is None, text


def test_echoes_of_the_question_or_the_original():
    assert echo("What is a prime number?", "What is a prime number?", "question").reason == "echo_of_question"
    assert echo("what is a prime", "Tell me: what is a prime number, exactly?", "question") is not None
    assert echo("A prime has exactly two divisors.", "What is a prime number?", "question") is None
    question = "The importance of cultural knowledge and how it is connected to our society, our humanity."
    reworded = "The importance of cultural knowledge and how it connects to our society, our humanity."
    assert echo(reworded, question, "question").reason == "echo_of_question"
    assert echo("Yes: boiling water for a minute kills the bacteria that make it unsafe.",
                "Is boiled water safe to drink?", "question") is None
    original = "Sourdough needs a starter, flour, water and salt; let it rise overnight and bake it hot."
    assert echo(original + " ", original, "original", threshold=0.95).reason == "echo_of_original"
    assert echo("Use rye flour for a sourer loaf and bake it in a Dutch oven.", original, "original", 0.95) is None
    # A refinement is a close edit of the original by design: only a near copy is an echo of it.
    edited = "Sourdough needs a starter, flour, water and salt; let it rise overnight, then bake it at 230 C."
    assert echo(edited, original, "original", 0.95, reword=None) is None


@pytest.mark.parametrize("text", ["3. The new employee will be able to work in a new company",
                                  "2) Find a few people who can help in their new field", "1、介绍一下现金流量表"])
def test_a_request_torn_out_of_a_list_is_caught(text):
    assert list_fragment(text).reason == "list_fragment"


@pytest.mark.parametrize("text", ["3.14 is the value of pi I remember; how many digits do I need for orbits?",
                                  "1. Mix the flour.\n2. Rest the dough.\nWhat did I do wrong?",
                                  "Explain step 2. of the process to me", "2024年的现金流量表怎么读？"])
def test_numbers_that_are_not_list_numbering_pass(text):
    assert list_fragment(text) is None


def test_a_request_that_is_its_tag_path_written_out_is_an_echo_of_the_tag():
    tag_path = ["News and Current Affairs", "Technology and society", "Big tech antitrust"]
    gate = DegenerateQuestion()
    for question in ("News and Current Affairs > Technology and society > Big tech antitrust", "Big tech antitrust"):
        verdict = gate.check({"id": "x", "question": question, "tag_path": tag_path})
        assert getattr(verdict, "reason", None) == "question_echo_of_tag", question
    fine = {"id": "y", "question": "Why did regulators sue big tech firms over antitrust in 2023?", "tag_path": tag_path}
    assert gate.check(fine) is fine


def test_collapse_unless_brevity_was_asked():
    old = "A long and careful answer. " * 20
    assert collapse("Short.", old).reason == "collapse"
    assert collapse("Short.", old, "The answer is too long; make it more concise.") is None
    assert collapse("Short.", old, "回答太长，请精简。") is None
    assert collapse("Short.", "Tiny answer.") is None  # nothing to collapse from
    assert collapse(old[: len(old) // 2], old) is None


@pytest.mark.parametrize("text", ["1", "2", "N/A", "none", "Good.", "", "无", "  ...  "])
def test_thin_critique_fields(text):
    assert thin(text, "strengths").reason == "thin_critique"


@pytest.mark.parametrize("text", ["Clear and polite wording.", "Lacks a concrete example.", "结构清晰，语气礼貌。"])
def test_substantial_critique_fields(text):
    assert thin(text, "strengths") is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2000))
def test_detectors_take_any_text(text):
    for check in (placeholder, label_only, loop, meta_commentary, degenerate):
        result = check(text)
        assert result is None or (result.reason and isinstance(result.detail, str))
    echo(text, text[::-1], "question")
    thin(text, "weaknesses")


@pytest.mark.parametrize("text", ["a" * 200_000, "word " * 50_000, "。" * 100_000, "[x_" * 30_000, "{" * 100_000 + "}"])
def test_detectors_stay_fast_on_huge_texts(text):
    started = time.perf_counter()
    degenerate(text)
    assert time.perf_counter() - started < 5
