"""Reading model answers: every shape a model might write, and property tests that nothing crashes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from condor.tree.model import strip_unprintable
from condor.tree.replies import ReplyError, parse_choice, parse_subtopics


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"subtopics": ["Sleep hygiene", "Insomnia", "Naps"]}', ["Sleep hygiene", "Insomnia", "Naps"]),
        ('```json\n{"subtopics": ["A b", "C"]}\n```', ["A b", "C"]),
        ("Sure! Here you go:\n['Celebrity Interviews', 'Charity Events']", ["Celebrity Interviews", "Charity Events"]),
        ('["x", {"name": "y"}, 3]', ["x", "y", "3"]),
        ("Here are some sub-topics:\n1. Sleep hygiene\n2) Insomnia\n3. **Naps**: short rests\n\nHope this helps!", ["Sleep hygiene", "Insomnia", "Naps"]),
        ("- Sleep hygiene\n* Insomnia\n• Naps - short rests", ["Sleep hygiene", "Insomnia", "Naps"]),
        ("一、睡眠卫生\n二、失眠\n三、午睡", ["睡眠卫生", "失眠", "午睡"]),
        ("1、睡眠卫生\n2、失眠。\n（3）“午睡”", ["睡眠卫生", "失眠", "午睡"]),
        ("Sleep hygiene, Insomnia, Naps.", ["Sleep hygiene", "Insomnia", "Naps"]),
        ("睡眠卫生、失眠、午睡", ["睡眠卫生", "失眠", "午睡"]),
        ("Topics:\nSleep hygiene\nInsomnia", ["Sleep hygiene", "Insomnia"]),
        ("1. Naps\n2. naps\n3. NAPS", ["Naps"]),
        ('{"topics": ["C++ templates", ".NET basics"]}', ["C++ templates", ".NET basics"]),
    ],
)
def test_subtopics_in_every_shape(text, expected):
    assert parse_subtopics(text) == expected


@pytest.mark.parametrize("text, reason", [(None, "empty_reply"), ("   ", "empty_reply"), ('{"subtopics": []}', "no_subtopics"), ("42", "no_subtopics"), ("- \n- **", "no_subtopics")])
def test_unusable_subtopic_answers(text, reason):
    with pytest.raises(ReplyError) as info:
        parse_subtopics(text)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"choice": 3}', 3), ('{"choice": 0}', None), ("2", 2), ("The best fit is option 4.", 4),
        ('```\n{"choice": 1}\n```', 1), ("None of them.", None), ("都不合适", None), ('{"choice": "none"}', None),
        ('{"choice": "5"}', 5), ("0", None),
    ],
)
def test_choices(text, expected):
    assert parse_choice(text, 5) == expected


@pytest.mark.parametrize("text, reason", [("", "empty_reply"), ("banana", "not_a_choice"), ("7", "choice_out_of_range"), ('{"choice": true}', "not_a_choice"), ('{"choice": 2.5}', "not_a_choice")])
def test_bad_choices(text, reason):
    with pytest.raises(ReplyError) as info:
        parse_choice(text, 5)
    assert info.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_subtopic_parser_never_crashes_and_returns_clean_names(text):
    try:
        names = parse_subtopics(text)
    except ReplyError:
        return
    assert names
    for name in names:
        assert name == name.strip() and "\n" not in name and name


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30), min_size=1, max_size=8))
def test_json_answers_come_back_as_written(names):
    import json

    # As written, less invisible control and bidirectional characters (which never belong in a tag).
    expected = [" ".join(strip_unprintable(n.replace("**", "")).split()) for n in names]
    try:
        parsed = parse_subtopics(json.dumps({"subtopics": names}, ensure_ascii=False))
    except ReplyError:
        # Only names that clean down to nothing, or hold brackets or double quotes (debris of a
        # list the parser did not recognise), may be refused.
        assert all(not n.strip(" \t\"'“”‘’`*_「」『』《》.,;:，。；：、!！") or set(n) & set('{}[]"') for n in expected)
        return
    assert len(parsed) <= len(names)
    for name in parsed:
        assert any(name in original for original in expected)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200), st.integers(min_value=1, max_value=50))
def test_choice_parser_never_crashes_and_stays_in_range(text, count):
    try:
        choice = parse_choice(text, count)
    except ReplyError:
        return
    assert choice is None or 1 <= choice <= count


def test_broken_json_is_malformed_not_a_topic():
    with pytest.raises(ReplyError) as info:
        parse_subtopics('{"subtopics": ["Sleep", "Insom')
    assert info.value.reason == "malformed_json"
    assert parse_subtopics("[Sleep, Insomnia]") == ["Sleep", "Insomnia"]
    with pytest.raises(ReplyError):
        parse_subtopics('Here: {"subtopics": [')
