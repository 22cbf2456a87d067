"""RefineStage: a new answer version from the latest answer and this round's critique."""

import pytest
from hypothesis import given, settings, strategies as st

from condor.llm.base import Completion
from condor.stages.base import ParseError
from condor.stages.refine import SCHEMA, RefineStage, read_json_answer, read_text_answer

RECORD = {
    "id": "en/a/domain_qa/easy",
    "question": "What is insomnia?",
    "language": "en",
    "versions": [{"round": 0, "answer": "Insomnia is bad sleep.", "finish_reason": "stop", "source": "answer"}],
    "critiques": [
        {"round": 1, "strengths": "Short.", "weaknesses": "Too vague.", "suggestions": "Give the clinical definition."},
    ],
}


def reply(text, finish_reason="stop"):
    return [Completion(text=text, finish_reason=finish_reason)]


def test_request_contains_question_answer_and_critique():
    [request] = RefineStage(1).requests(RECORD)
    user = request.messages[-1]["content"]
    for part in ("What is insomnia?", "Insomnia is bad sleep.", "Too vague.", "Give the clinical definition.", "Short."):
        assert part in user
    assert "[Improved Answer Start]...[Improved Answer End]" in user
    assert request.json_schema is None


def test_request_uses_this_rounds_critique_and_marks_empty_fields():
    record = {
        **RECORD,
        "critiques": [
            {"round": 1, "strengths": "", "weaknesses": "first", "suggestions": "s1"},
            {"round": 2, "strengths": "", "weaknesses": "second", "suggestions": ""},
        ],
    }
    user = RefineStage(1).requests(record)[0].messages[-1]["content"]
    assert "first" in user and "second" not in user and "(none)" in user
    zh = RefineStage(2).requests({**record, "language": "zh"})[0].messages[-1]["content"]
    assert "second" in zh and "（无）" in zh and "不足" in zh


def test_structured_request():
    [request] = RefineStage(1).requests(RECORD, structured=True)
    assert request.json_schema == SCHEMA and "improved_answer" in request.messages[-1]["content"]


def test_metadata_and_bad_input():
    stage = RefineStage(2)
    assert (stage.name, stage.role, stage.has_schema) == ("refine_2", "refiner", True)
    with pytest.raises(ValueError):
        RefineStage(0)
    with pytest.raises(ValueError, match="no critique"):
        RefineStage(1).requests({**RECORD, "critiques": []})


def test_parse_appends_version():
    [out] = RefineStage(1).parse(RECORD, reply("[Improved Answer Start]Insomnia is persistent trouble sleeping.[Improved Answer End]"))
    assert out["versions"][-1] == {"round": 1, "answer": "Insomnia is persistent trouble sleeping.", "finish_reason": "stop", "source": "refine"}
    assert len(out["versions"]) == 2 and len(RECORD["versions"]) == 1


REALISTIC = [
    ("Here is the improved answer:\n\n[Improved Answer Start]\nBetter.\n[Improved Answer End]\n\nI fixed the vagueness.", "Better."),
    ("[Improved Answer Start]\n## Definition\n\n- **Insomnia** is...\n- Lasts 3 months\n", "## Definition\n\n- **Insomnia** is...\n- Lasts 3 months"),
    ("[improved answer start] lower case [improved answer end]", "lower case"),
    ("**[Improved Answer Start]**\nBold markers.\n**[Improved Answer End]**", "Bold markers."),
    ("[Revised Answer]\nA revised label.", "A revised label."),
    ("[Improved_Answer_Start]underscores[Improved_Answer_End]", "underscores"),
    ("Improved answer:\nNo start marker here.\n[Improved Answer End]", "No start marker here."),
    ("[Improved Answer Start]...[Improved Answer End]\n[Improved Answer Start]The real one.[Improved Answer End]", "The real one."),
    ("[Improved Answer Start]Math: \\[ x^2 \\] stays.[Improved Answer End]", "Math: \\[ x^2 \\] stays."),
    ('```json\n{"improved_answer": "From JSON."}\n```', "From JSON."),
    ("【改进后的回答开始】失眠是指持续的入睡困难。【改进后的回答结束】", "失眠是指持续的入睡困难。"),
    ("【Improved Answer Start】\n【注意】失眠需要就医。\n【Improved Answer End】", "【注意】失眠需要就医。"),
    ("好的，以下是改进后的回答：\n[Improved Answer Start]\n失眠是一种睡眠障碍。\n[Improved Answer End]\n以上。", "失眠是一种睡眠障碍。"),
    ("<think>[Improved Answer Start]draft</think>[Improved Answer Start]final[Improved Answer End]", "final"),
]


@pytest.mark.parametrize("text, expected", REALISTIC)
def test_realistic_refinements(text, expected):
    [out] = RefineStage(1).parse(RECORD, reply(text))
    assert out["versions"][-1]["answer"] == expected


@pytest.mark.parametrize(
    "text, reason",
    [
        ("Insomnia is persistent difficulty sleeping.", "missing_markers"),
        ("[Improved Answer Start][Improved Answer End]", "empty_answer"),
        ("[Improved Answer Start]   ...   ", "empty_answer"),
        ("[Improved Answer End]", "empty_answer"),
        ("", "missing_markers"),
    ],
)
def test_unusable_refinements(text, reason):
    with pytest.raises(ParseError) as info:
        RefineStage(1).parse(RECORD, reply(text))
    assert info.value.reason == reason


def test_cut_off_refinement_is_kept_with_its_finish_reason():
    [out] = RefineStage(1).parse(RECORD, reply("[Improved Answer Start]Insomnia is", "length"))
    assert out["versions"][-1]["finish_reason"] == "length"


@pytest.mark.parametrize(
    "text, expected",
    [('{"improved_answer": "A."}', "A."), ('{"Improved Answer": "B."}', "B."), ('{"answer": "C."}', "C."),
     ("[Improved Answer Start]D.[Improved Answer End]", "D.")],
)
def test_structured_refinements(text, expected):
    assert RefineStage(1).parse(RECORD, reply(text), structured=True)[0]["versions"][-1]["answer"] == expected


@pytest.mark.parametrize("text, reason", [('{"improved_answer": ""}', "empty_answer"), ("[]", "invalid_json"), ("nope", "invalid_json")])
def test_structured_failures(text, reason):
    with pytest.raises(ParseError) as info:
        RefineStage(1).parse(RECORD, reply(text), structured=True)
    assert info.value.reason == reason


def test_readers_directly():
    assert read_text_answer("[Improved Answer Start]x") == "x"
    assert read_json_answer('{"improved_answer": ["a", "b"]}') == "- a\n- b"


def test_repair_request():
    [repair] = RefineStage(1).repair_requests(RECORD, reply("Just an answer."), ParseError("missing_markers", "no block"))
    assert repair.messages[-2]["content"] == "Just an answer."
    assert "[Improved Answer Start]" in repair.messages[-1]["content"]


FRAGMENTS = st.sampled_from(
    ["[Improved Answer Start]", "[Improved Answer End]", "【改进后的回答开始】", "[Answer]", "**", "\n", "{", "}",
     '"improved_answer": "x"', "```json", "```", "...", "答", "<think>", "</think>"]
)
REPLIES = st.one_of(st.text(max_size=300), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=40).map("".join))


@settings(max_examples=200, deadline=None)
@given(REPLIES, st.booleans())
def test_any_reply_gives_a_version_or_parse_error(text, structured):
    try:
        [out] = RefineStage(1).parse(RECORD, reply(text), structured=structured)
    except ParseError as exc:
        assert exc.reason in {"missing_markers", "empty_answer", "invalid_json"}
        return
    assert any(ch.isalnum() for ch in out["versions"][-1]["answer"])


# ---------------------------------------------------------------- short markers inside the answer


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "[Improved Answer Start]本题考查光合作用的条件。\n\n【答案】B\n\n【解析】光照是光合作用的必要条件，所以选 B，"
            "其余选项都与题干中的条件不符，因此排除。[Improved Answer End]",
            "本题考查光合作用的条件。\n\n【答案】B\n\n【解析】光照是光合作用的必要条件，所以选 B，其余选项都与题干中的条件不符，因此排除。",
        ),
        (
            "[Improved Answer Start]Start with the definition.\n\n[Answer] 42, because the series converges to it "
            "after enough terms are summed together.[Improved Answer End]",
            "Start with the definition.\n\n[Answer] 42, because the series converges to it after enough terms are summed together.",
        ),
        ("[Answer]\nThe short marker alone still opens the answer.", "The short marker alone still opens the answer."),
    ],
)
def test_short_answer_markers_do_not_split_the_answer(text, expected):
    assert read_text_answer(text) == expected
