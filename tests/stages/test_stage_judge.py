"""JudgeStage: one 1-10 grade per answer version."""

import pytest
from hypothesis import given, settings, strategies as st

from condor.llm.base import Completion
from condor.stages.base import ParseError
from condor.stages.judge import SCHEMA, JudgeStage, read_grade

RECORD = {
    "id": "en/a/domain_qa/easy",
    "question": "What is insomnia?",
    "language": "en",
    "versions": [
        {"round": 0, "answer": "Bad sleep.", "finish_reason": "stop", "source": "answer"},
        {"round": 1, "answer": "Persistent difficulty sleeping.", "finish_reason": "stop", "source": "refine"},
    ],
}


def replies(*texts):
    return [Completion(text=t, finish_reason="stop") for t in texts]


def test_one_request_per_version_each_alone():
    requests = JudgeStage(temperature=0.0).requests(RECORD)
    assert len(requests) == 2
    first, second = (r.messages[-1]["content"] for r in requests)
    assert "Bad sleep." in first and "Persistent" not in first
    assert "Persistent difficulty sleeping." in second and "Bad sleep." not in second
    assert "What is insomnia?" in first and "[Score]" in first and "[Reason Start]" in first
    assert requests[0].temperature == 0.0 and requests[0].json_schema is None


def test_structured_and_chinese():
    requests = JudgeStage().requests({**RECORD, "language": "zh"}, structured=True)
    assert all(r.json_schema == SCHEMA for r in requests)
    assert "评价" in requests[0].messages[-1]["content"]
    assert SCHEMA["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 10}


def test_metadata():
    stage = JudgeStage()
    assert (stage.name, stage.role, stage.has_schema) == ("judge", "judge", True)


def test_parse_sets_scores_for_all_versions():
    [out] = JudgeStage().parse(RECORD, replies("[Reason Start]Too vague.[Reason End]\n[Score] 4", "[Reason Start]Precise.[Reason End]\n[Score] 8"))
    assert out["scores"] == [{"version": 0, "score": 4, "reason": "Too vague."}, {"version": 1, "score": 8, "reason": "Precise."}]
    assert "scores" not in RECORD


def test_parse_replaces_earlier_scores():
    [out] = JudgeStage().parse({**RECORD, "scores": [{"version": 0, "score": 1, "reason": "old"}]}, replies("[Score] 5", "[Score] 6"))
    assert [s["score"] for s in out["scores"]] == [5, 6]


REALISTIC = [
    ("[Reason Start]Accurate but short.[Reason End]\n[Score] 7", 7, "Accurate but short."),
    ("[Reason Start]Fine.[Reason End]\n[Score]: 8/10", 8, "Fine."),
    ("**[Score]** **9**", 9, ""),
    ("[score] <6>", 6, ""),
    ("The answer is decent but misses causes.\n\nScore: 6/10", 6, "The answer is decent but misses causes.\n\nScore: 6/10"),
    ("A 10 would need citations. Final score: 7", 7, None),
    ("I would rate this answer 5 out of 10.", 5, None),
    ("**Rating:** 3", 3, None),
    ("8", 8, "8"),
    ("[Reason Start]Good[Reason End]\n[Score] 7.5", 8, "Good"),
    ("【理由开始】回答准确但不够详细。【理由结束】\n【评分】7", 7, "回答准确但不够详细。"),
    ("理由：内容正确，结构清晰。\n评分：9分", 9, None),
    ("我给出8分，因为回答基本正确。", 8, None),
    ("[Reason Start]回答有误[Reason End][Score] 2", 2, "回答有误"),
    ('```json\n{"reason": "ok", "score": 6}\n```', 6, "ok"),
    ("<think>maybe [Score] 3</think>[Score] 9", 9, ""),
]


@pytest.mark.parametrize("text, score, reason", REALISTIC)
def test_realistic_grades(text, score, reason):
    got_score, got_reason = read_grade(text)
    assert got_score == score
    if reason is not None:
        assert got_reason == reason


@pytest.mark.parametrize(
    "text, reason",
    [
        ("This is a good answer.", "missing_score"),
        ("[Score] 11", "score_out_of_range"),
        ("[Score] 0", "score_out_of_range"),
        ("Score: 85", "score_out_of_range"),
        ("", "missing_score"),
        ("It's about an underscore 5", "missing_score"),
    ],
)
def test_unusable_grades(text, reason):
    with pytest.raises(ParseError) as info:
        read_grade(text)
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "text, expected",
    [('{"reason": "r", "score": 7}', 7), ('{"Score": "8", "Reason": "r"}', 8), ('{"score": 6.5}', 7), ("[Score] 4", 4)],
)
def test_structured_grades(text, expected):
    assert read_grade(text, structured=True)[0] == expected


@pytest.mark.parametrize(
    "text, reason",
    [('{"reason": "r"}', "missing_score"), ('{"score": true}', "missing_score"), ('{"score": "high"}', "missing_score"),
     ('{"score": 12}', "score_out_of_range"), ("nothing", "invalid_json"), ('{"score": NaN}', "score_out_of_range")],
)
def test_structured_failures(text, reason):
    with pytest.raises(ParseError) as info:
        read_grade(text, structured=True)
    assert info.value.reason == reason


def test_failure_names_the_version():
    with pytest.raises(ParseError) as info:
        JudgeStage().parse(RECORD, replies("[Score] 7", "no idea"))
    assert info.value.reason == "missing_score" and info.value.detail.startswith("version 1")


def test_failed_completion_and_count_mismatch():
    with pytest.raises(ParseError) as info:
        JudgeStage().parse(RECORD, [Completion(text="[Score] 5"), Completion.failed("timeout")])
    assert info.value.reason == "no_output"
    with pytest.raises(ValueError):
        JudgeStage().parse(RECORD, replies("[Score] 5"))


def test_repair_resends_good_versions_and_repairs_bad_ones():
    stage = JudgeStage()
    originals = stage.requests(RECORD)
    repaired = stage.repair_requests(RECORD, replies("[Score] 7", "dunno"), ParseError("missing_score"))
    assert len(repaired) == 2
    assert repaired[0] == originals[0]
    assert repaired[1].messages[:-2] == originals[1].messages
    assert repaired[1].messages[-2]["content"] == "dunno" and "[Score]" in repaired[1].messages[-1]["content"]


FRAGMENTS = st.sampled_from(
    ["[Score]", "[Reason Start]", "[Reason End]", "Score:", "评分：", "/10", " out of 10", "分", "**", "<", ">",
     "7", "10", "0", "11", "3.5", "\n", "{", "}", '"score": 5', "```", "NaN", "1e400"]
)
REPLIES = st.one_of(st.text(max_size=200), st.lists(st.one_of(FRAGMENTS, st.text(max_size=6)), max_size=30).map("".join))


@settings(max_examples=200, deadline=None)
@given(REPLIES, st.booleans())
def test_any_reply_gives_a_valid_score_or_parse_error(text, structured):
    try:
        score, reason = read_grade(text, structured)
    except ParseError as exc:
        assert exc.reason in {"missing_score", "score_out_of_range", "invalid_json"}
        return
    assert isinstance(score, int) and 1 <= score <= 10 and isinstance(reason, str)


# ---------------------------------------------------------------- the verdict, not a score talked about


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Score: 6\n\nA score of 9 or 10 would require citing sources.", 6),
        ("The answer is clear but thin. A rating of 9 would need worked examples. Overall 6/10.", 6),
        ("[Reason Start]Good.[Reason End]\n[Score]\n8", 8),
        ("[Reason Start]Good.[Reason End]\n[Score] [8]", 8),
        ("[Reason Start]Good.[Reason End]\n【Score】【7】", 7),
        ("回答准确但缺少例子，要得到9分需要补充案例。\n评分：6", 6),
    ],
)
def test_hypothetical_scores_and_marker_layouts(text, expected):
    assert read_grade(text)[0] == expected


def test_judge_layout_keeps_the_space_after_score():
    from condor.stages.prompting import render

    assert render("judge", "en", "text_format").endswith("[Score] ")
