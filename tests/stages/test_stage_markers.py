"""The tolerant readers shared by the stages: markers, sections, JSON, reasoning blocks."""

import pytest
from hypothesis import given, settings, strategies as st

from condor.stages.base import ParseError
from condor.stages.markers import (
    bracketed,
    clean_body,
    extract_json,
    find_markers,
    heading,
    json_text,
    lookup,
    read_sections,
    strip_reasoning,
)

START = {"s": bracketed(r"strength\s*start")}
END = {"s": bracketed(r"strength\s*end")}


@pytest.mark.parametrize(
    "marker",
    ["[Strength Start]", "[strength start]", "【Strength Start】", "［Strength Start］", "\\[Strength Start\\]", "[ Strength  Start ]", "### [Strength Start]"],
)
def test_bracketed_marker_variants(marker):
    assert read_sections(f"{marker}good[Strength End]", START, END) == {"s": "good"}


def test_bold_around_markers_is_removed_but_bold_content_kept():
    text = "**[Strength Start]** It is **very** clear. **[Strength End]**"
    assert read_sections(text, START, END) == {"s": "It is **very** clear."}


def test_missing_end_marker_runs_to_next_start_or_end_of_text():
    starts = {"a": bracketed("a start"), "b": bracketed("b start")}
    ends = {"a": bracketed("a end"), "b": bracketed("b end")}
    assert read_sections("[A Start] one [B Start] two", starts, ends) == {"a": "one", "b": "two"}


def test_repeated_sections_are_joined_and_placeholders_dropped():
    text = "[Strength Start]...[Strength End][Strength Start]one[Strength End][Strength Start]two"
    assert read_sections(text, START, END) == {"s": "one\ntwo"}


def test_heading_requires_line_start_and_colon_or_line_end():
    pattern = {"h": heading("hard")}
    assert find_markers("Hard: x", pattern)
    assert find_markers("## **Hard**\nx", pattern)
    assert find_markers("1. Hard question (expert):", {"h": heading("hard question")})
    assert not find_markers("Hard drives fail often.", pattern)
    assert not find_markers("This is hard: really", pattern)


def test_longer_marker_wins_at_same_position():
    markers = find_markers("[Question End]", {"short": r"\[Question", "long": r"\[Question End\]"})
    assert [m.kind for m in markers] == ["long"]


def test_clean_body_keeps_bullets_and_drops_rules():
    assert clean_body(": - one\n- two\n---\n") == "- one\n- two"
    assert clean_body("** text **") == "text"
    assert clean_body("**whole**") == "whole"
    assert clean_body("**half") == "half"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("<think>hmm [Easy]</think>answer", "answer"),
        ("<THINK>never finished", ""),
        ("reasoning the server left</think>answer", "answer"),
        ("no reasoning", "no reasoning"),
        ("  <think>plan</think>\nanswer", "answer"),
        # Answers that discuss the tags keep them: only a leading block is reasoning.
        ("Models wrap reasoning in <think> and </think> tags.", "Models wrap reasoning in <think> and </think> tags."),
        ("Use a custom element like <think> to mark drafts.", "Use a custom element like <think> to mark drafts."),
        ("<think>a</think>Wrap it in <think> and </think>.", "Wrap it in <think> and </think>."),
    ],
)
def test_strip_reasoning(text, expected):
    assert strip_reasoning(text).strip() == expected


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1}',
        '```json\n{"a": 1}\n```',
        'Here it is:\n```\n{"a": 1}\n```\nDone.',
        'Sure! {"a": 1} Hope this helps {',
        '{"a": 1} trailing words',
        '```json\n{"a": 1}',
    ],
)
def test_extract_json_variants(text):
    assert extract_json(text) == {"a": 1}


@pytest.mark.parametrize("text", ["", "no json", "{broken", "[[[[" * 500])
def test_extract_json_failures(text):
    with pytest.raises(ParseError) as info:
        extract_json(text)
    assert info.value.reason == "invalid_json"


def test_json_text_and_lookup():
    assert json_text(["a", "b"]) == "- a\n- b"
    assert json_text(["only"]) == "only"
    assert json_text(None) == "" and json_text(True) == "" and json_text(7) == "7"
    assert lookup({"Improved_Answer": 1}, "improved answer") == 1
    assert lookup({"x": 1}, "y") is None


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_extract_json_raises_only_parse_error(text):
    try:
        extract_json(text)
    except ParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["[Strength Start]", "[Strength End]", "【", "】", "**", "\n", "x", ":", "\\["]), max_size=30).map("".join))
def test_read_sections_never_raises(text):
    read_sections(text, START, END)


def test_long_runs_of_whitespace_and_markers_parse_quickly():
    # Regression: neighbouring optional whitespace runs in the heading pattern once took minutes here.
    import time

    from condor.stages.critique import read_text_critique
    from condor.stages.judge import read_grade
    from condor.stages.questions import read_text_questions
    from condor.stages.refine import read_text_answer

    nasty = [" " * 20000, "\t " * 10000 + "x", "Easy" + " " * 20000 + "x", "question" + " " * 20000 + "x",
             "[level" + " " * 20000, "**" * 10000, "[" * 20000, "Strengths" + " " * 20000 + "("]
    started = time.monotonic()
    for text in nasty:
        for reader in (read_text_questions, read_text_critique, read_text_answer, read_grade):
            try:
                reader(text)
            except ParseError:
                pass
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------- no quadratic time on long replies


def _seconds(fn, *args):
    import time

    start = time.perf_counter()
    try:
        fn(*args)
    except ParseError:
        pass
    return time.perf_counter() - start


def test_clean_body_is_linear_on_dangling_bold():
    # 50 KB of "** " took 13.8 s when each pair was removed by a separate substitution.
    assert _seconds(clean_body, "** " * 17000) < 1
    assert clean_body("** ** ** text ** **") == "text"


def test_refine_parser_is_fast_on_long_bold_debris():
    from condor.stages.refine import read_text_answer

    assert _seconds(read_text_answer, "[Improved Answer Start]" + "** " * 17000) < 1


def test_a_raw_line_break_inside_a_json_string_reads_as_a_line_break():
    reply = '{"strengths": "1. Clear.\n2. Short.", "weaknesses": "none"}'
    assert extract_json(reply) == {"strengths": "1. Clear.\n2. Short.", "weaknesses": "none"}


def test_control_characters_never_reach_a_fields_text():
    assert json_text(extract_json('{"a": "one\\u0000 two\r\n\tthree\u0007"}')["a"]) == "one two\n\tthree"
