"""CritiqueStage: strengths, weaknesses and suggestions about the latest answer version."""

import pytest
from hypothesis import given, settings, strategies as st

from condor.llm.base import Completion
from condor.stages.base import ParseError
from condor.stages.critique import SCHEMA, CritiqueStage, read_json_critique, read_text_critique

RECORD = {
    "id": "en/a/domain_qa/easy",
    "question": "What is insomnia?",
    "language": "en",
    "versions": [
        {"round": 0, "answer": "Insomnia is bad sleep.", "finish_reason": "stop", "source": "answer"},
        {"round": 1, "answer": "Insomnia is persistent difficulty falling or staying asleep.", "finish_reason": "stop", "source": "refine"},
    ],
    "critiques": [{"round": 1, "strengths": "short", "weaknesses": "vague", "suggestions": "define it"}],
}


def reply(text):
    return [Completion(text=text, finish_reason="stop")]


def test_request_shows_question_and_latest_version():
    [request] = CritiqueStage(2).requests(RECORD)
    user = request.messages[-1]["content"]
    assert "What is insomnia?" in user
    assert "persistent difficulty" in user and "Insomnia is bad sleep." not in user
    assert "[Strength Start]" in user and "[Weakness Start]" in user and "[Suggestion End]" in user
    assert request.json_schema is None


def test_structured_and_chinese_requests():
    [request] = CritiqueStage(1).requests({**RECORD, "language": "zh"}, structured=True)
    assert request.json_schema == SCHEMA and "JSON" in request.messages[-1]["content"]
    assert "评审" in request.messages[-1]["content"]


def test_stage_names_and_rounds():
    stage = CritiqueStage(3)
    assert (stage.name, stage.role, stage.has_schema, stage.round) == ("critique_3", "critic", True, 3)
    with pytest.raises(ValueError):
        CritiqueStage(0)
    with pytest.raises(ValueError, match="no answer versions"):
        CritiqueStage(1).requests({"id": "x", "question": "q?", "language": "en"})


def test_parse_appends_a_critique_of_this_round():
    text = "[Strength Start]Concise.[Strength End]\n[Weakness Start]Too vague.[Weakness End]\n[Suggestion Start]Define duration.[Suggestion End]"
    [out] = CritiqueStage(2).parse(RECORD, reply(text))
    assert out["critiques"][-1] == {"round": 2, "strengths": "Concise.", "weaknesses": "Too vague.", "suggestions": "Define duration."}
    assert len(out["critiques"]) == 2 and len(RECORD["critiques"]) == 1


REALISTIC = [
    # English, clean with bullets
    ("[Strength Start]\n- Clear\n- Short\n[Strength End]\n[Weakness Start]\n- No causes\n[Weakness End]\n[Suggestion Start]\n- Add causes\n[Suggestion End]",
     ("- Clear\n- Short", "- No causes", "- Add causes")),
    # missing end markers, plural markers, prose around
    ("Here is my review.\n[Strengths Start] Clear.\n[Weaknesses Start] No causes.\n[Suggestions Start] Add causes.\nOverall decent.",
     ("Clear.", "No causes.", "Add causes.\nOverall decent.")),
    # headings, no markers
    ("**Strengths:**\n- Clear\n\n**Weaknesses:**\n- No causes\n\n**Suggestions:**\n1. Add causes", ("- Clear", "- No causes", "1. Add causes")),
    # markdown headings with Areas for improvement
    ("## Strengths\nClear.\n## Areas for Improvement\nNo causes.\n## Recommendations\nAdd causes.", ("Clear.", "No causes.", "Add causes.")),
    # one block per weakness
    ("[Weakness Start]A[Weakness End][Weakness Start]B[Weakness End][Suggestion Start]C[Suggestion End]", ("", "A\nB", "C")),
    # lower-case, bold markers, no strengths at all
    ("**[weakness start]** misses treatment options **[weakness end]**", ("", "misses treatment options", "")),
    # JSON in text mode, lists
    ('```json\n{"strengths": ["clear"], "weaknesses": ["vague", "short"], "suggestions": "add detail"}\n```', ("clear", "- vague\n- short", "add detail")),
    # Chinese full-width markers
    ("【优点开始】结构清晰【优点结束】【缺点开始】缺少病因【缺点结束】【建议开始】补充病因【建议结束】", ("结构清晰", "缺少病因", "补充病因")),
    # Chinese headings
    ("优点：结构清晰\n不足：缺少病因\n改进建议：补充病因和治疗方法", ("结构清晰", "缺少病因", "补充病因和治疗方法")),
    # Chinese with English markers, missing ends
    ("[Strength Start]回答简洁。\n[Weakness Start]没有提到病因。\n[Suggestion Start]补充常见病因。", ("回答简洁。", "没有提到病因。", "补充常见病因。")),
    # Chinese markdown headings
    ("### 优点\n简洁\n### 缺点\n不够具体\n### 建议\n增加例子", ("简洁", "不够具体", "增加例子")),
    # think block first
    ("<think>[Weakness Start]draft[Weakness End]</think>[Weakness Start]real[Weakness End][Suggestion Start]fix[Suggestion End]", ("", "real", "fix")),
]


@pytest.mark.parametrize("text, expected", REALISTIC)
def test_realistic_critiques(text, expected):
    [out] = CritiqueStage(1).parse(RECORD, reply(text))
    critique = out["critiques"][-1]
    assert (critique["strengths"], critique["weaknesses"], critique["suggestions"]) == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("The answer is fine overall.", "missing_sections"),
        ("[Strength Start]Everything is perfect.[Strength End]", "empty_critique"),
        ("[Strength Start]Good[Strength End][Weakness Start][Weakness End][Suggestion Start]...[Suggestion End]", "empty_critique"),
        ("优点：很好", "empty_critique"),
        ("", "missing_sections"),
    ],
)
def test_unusable_critiques(text, reason):
    with pytest.raises(ParseError) as info:
        CritiqueStage(1).parse(RECORD, reply(text))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "text, reason",
    [
        ('{"strengths": "ok", "weaknesses": "vague", "suggestions": "more"}', None),
        ('{"Strengths": "ok", "Weaknesses": [], "Suggestions": ["add x"]}', None),
        ('{"strengths": "ok", "weaknesses": "", "suggestions": ""}', "empty_critique"),
        ("[1, 2]", "invalid_json"),
        ("garbage", "invalid_json"),
    ],
)
def test_structured_critiques(text, reason):
    stage = CritiqueStage(1)
    if reason is None:
        assert stage.parse(RECORD, reply(text), structured=True)[0]["critiques"][-1]["round"] == 1
    else:
        with pytest.raises(ParseError) as info:
            stage.parse(RECORD, reply(text), structured=True)
        assert info.value.reason == reason


def test_readers_directly():
    assert read_text_critique("[Weakness Start]x[Weakness End]")["weaknesses"] == "x"
    assert read_json_critique('{"suggestions": "y"}')["suggestions"] == "y"


def test_repair_request():
    [repair] = CritiqueStage(1).repair_requests(RECORD, reply("It is fine."), ParseError("missing_sections", "no blocks"))
    assert repair.messages[-2] == {"role": "assistant", "content": "It is fine."}
    assert "no blocks" in repair.messages[-1]["content"] and "[Weakness Start]" in repair.messages[-1]["content"]
    assert CritiqueStage(1).repair_requests(RECORD, [Completion.failed("x")], ParseError("no_output")) is None


FRAGMENTS = st.sampled_from(
    ["[Strength Start]", "[Strength End]", "[Weakness Start]", "[Weakness End]", "[Suggestion Start]", "[Suggestion End]",
     "【缺点开始】", "建议：", "Weaknesses:", "**", "\n", "{", "}", '"weaknesses": ["a"]', "```", "x", "缺"]
)
REPLIES = st.one_of(st.text(max_size=300), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=40).map("".join))


@settings(max_examples=200, deadline=None)
@given(REPLIES, st.booleans())
def test_any_reply_gives_a_critique_or_parse_error(text, structured):
    try:
        [out] = CritiqueStage(1).parse(RECORD, reply(text), structured=structured)
    except ParseError as exc:
        assert exc.reason in {"missing_sections", "empty_critique", "invalid_json"}
        return
    critique = out["critiques"][-1]
    assert critique["weaknesses"].strip() or critique["suggestions"].strip()


# ---------------------------------------------------------------- echoes and empty words are no critique


@pytest.mark.parametrize(
    "text",
    [
        "[Strength Start]what the answer does well[Strength End]\n[Weakness Start]what is wrong, missing or weak[Weakness End]\n"
        "[Suggestion Start]concrete changes that would make it better[Suggestion End]",
        "[Strength Start]回答做得好的地方[Strength End]\n[Weakness Start]回答中错误、缺失或薄弱的地方[Weakness End]\n"
        "[Suggestion Start]能让回答更好的具体修改[Suggestion End]",
        "[Strength Start]Clear.[Strength End]\n[Weakness Start]None.[Weakness End]\n[Suggestion Start]N/A[Suggestion End]",
        "[Strength Start]清楚。[Strength End]\n[Weakness Start]无。[Weakness End]\n[Suggestion Start]- 暂无[Suggestion End]",
    ],
)
def test_layout_echoes_and_none_words_are_rejected(text):
    with pytest.raises(ParseError) as info:
        read_text_critique(text)
    assert info.value.reason == "empty_critique"


@pytest.mark.parametrize(
    "text",
    [
        "Strengths:\nClear structure.\n\nWeak points:\nThe dosage is wrong.\n\nSuggestions:\nFix the dosage.",
        "优点：\n结构清晰。\n\n不足之处：\nThe dosage is wrong.\n\n建议：\nFix the dosage.",
    ],
)
def test_more_weakness_headings(text):
    found = read_text_critique(text)
    assert found["weaknesses"] == "The dosage is wrong."
    assert "dosage" not in found["strengths"]
