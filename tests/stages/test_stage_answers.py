"""AnswerStage: the question as the user message, the reply as version 0."""

import pytest
from hypothesis import given, settings, strategies as st

from condor.llm.base import Completion
from condor.stages.answers import AnswerStage
from condor.stages.base import ParseError

QUESTION = {"id": "en/a/domain_qa/easy", "question": "What is insomnia?", "language": "en", "difficulty": "easy"}


def test_request_sends_the_question_as_user_message():
    [request] = AnswerStage(max_tokens=300, temperature=0.2).requests(QUESTION)
    assert request.messages[-1] == {"role": "user", "content": "What is insomnia?"}
    assert request.messages[0]["role"] == "system" and "language" in request.messages[0]["content"]
    assert (request.max_tokens, request.temperature, request.json_schema) == (300, 0.2, None)


def test_system_prompt_follows_language_and_can_be_off():
    [zh] = AnswerStage().requests({**QUESTION, "language": "zh", "question": "什么是失眠？"})
    assert "语言" in zh.messages[0]["content"]
    [bare] = AnswerStage(system_prompt=False).requests(QUESTION)
    assert bare.messages == [{"role": "user", "content": "What is insomnia?"}]


def test_request_needs_a_question():
    with pytest.raises(ValueError, match="no question"):
        AnswerStage().requests({"id": "x", "language": "en"})


def test_parse_appends_version_zero_without_touching_input():
    [out] = AnswerStage().parse(QUESTION, [Completion(text="  Insomnia is trouble sleeping.\n", finish_reason="stop")])
    assert out["versions"] == [{"round": 0, "answer": "Insomnia is trouble sleeping.", "finish_reason": "stop", "source": "answer"}]
    assert "versions" not in QUESTION and out["question"] == QUESTION["question"]


def test_parse_keeps_length_finish_reason_for_the_filter():
    [out] = AnswerStage().parse(QUESTION, [Completion(text="Insomnia is", finish_reason="length")])
    assert out["versions"][0]["finish_reason"] == "length"


def test_parse_strips_reasoning_block():
    [out] = AnswerStage().parse(QUESTION, [Completion(text="<think>user wants a definition</think>\nIt is trouble sleeping.")])
    assert out["versions"][0]["answer"] == "It is trouble sleeping."


@pytest.mark.parametrize("text", ["", "   \n", "<think>only thinking", "...", "**"])
def test_empty_answers_are_parse_errors(text):
    with pytest.raises(ParseError) as info:
        AnswerStage().parse(QUESTION, [Completion(text=text)])
    assert info.value.reason == "empty_answer"


def test_failed_completion_is_no_output():
    with pytest.raises(ParseError) as info:
        AnswerStage().parse(QUESTION, [Completion.failed("HTTP 400")])
    assert info.value.reason == "no_output" and "HTTP 400" in info.value.detail


def test_repair_asks_for_a_fresh_sample():
    stage = AnswerStage()
    [repair] = stage.repair_requests(QUESTION, [Completion(text="")], ParseError("empty_answer"))
    [original] = stage.requests(QUESTION)
    assert repair.messages == original.messages and repair.sample_index == original.sample_index + 1


def test_stage_metadata():
    stage = AnswerStage()
    assert (stage.name, stage.role, stage.has_schema) == ("answer", "answerer", False)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_reply_gives_a_version_or_parse_error(text):
    try:
        [out] = AnswerStage().parse(QUESTION, [Completion(text=text)])
    except ParseError as exc:
        assert exc.reason == "empty_answer"
        return
    assert out["versions"][-1]["answer"].strip()
