"""PairwiseStage: both orders asked, a win only when they agree, verdicts read robustly (pure, no model)."""

import pytest
from hypothesis import given, settings, strategies as st

from condor.llm.base import Completion
from condor.stages.base import ParseError
from condor.stages.pairwise import SCHEMA, PairwiseStage, combine, read_verdict

RECORD = {"id": "pair/1", "question": "How do I boil an egg?", "language": "en",
          "pair": {"a": "Put it in water.", "b": "Simmer it for nine minutes, then cool it in cold water."}}


def replies(*texts):
    return [Completion(text=t, finish_reason="stop") for t in texts]


def test_each_pair_is_asked_in_both_orders():
    first, second = PairwiseStage(temperature=0.0).requests(RECORD)
    a, b = RECORD["pair"]["a"], RECORD["pair"]["b"]
    one, two = first.messages[-1]["content"], second.messages[-1]["content"]
    assert one.index(a) < one.index(b) and two.index(b) < two.index(a)
    assert "<answer_1>" in one and "[Verdict]" in one and "How do I boil an egg?" in one
    assert first.temperature == 0.0 and first.json_schema is None


def test_structured_and_chinese_prompts():
    requests = PairwiseStage().requests({**RECORD, "language": "zh"}, structured=True)
    assert all(r.json_schema == SCHEMA for r in requests)
    assert "回答" in requests[0].messages[-1]["content"]
    assert SCHEMA["properties"]["verdict"]["enum"] == ["1", "2", "tie"]
    assert (PairwiseStage.name, PairwiseStage.role, PairwiseStage.has_schema) == ("pairwise", "judge", True)


def test_a_side_wins_only_when_both_orders_name_it():
    [out] = PairwiseStage().parse(RECORD, replies("[Verdict] 2", "[Verdict] 1"))  # b second, then b first
    assert out["pairwise"]["winner"] == "b" and out["pairwise"]["consistent"] is True
    assert [v["first"] for v in out["pairwise"]["verdicts"]] == ["a", "b"]


def test_a_judge_that_always_picks_the_first_answer_gives_a_tie():
    [out] = PairwiseStage().parse(RECORD, replies("[Verdict] 1", "[Verdict] 1"))
    assert out["pairwise"]["winner"] == "tie" and out["pairwise"]["consistent"] is False
    assert [v["winner"] for v in out["pairwise"]["verdicts"]] == ["a", "b"]


def test_a_tie_in_one_order_is_a_tie():
    [out] = PairwiseStage().parse(RECORD, replies("[Verdict] 2", "[Verdict] tie"))
    assert out["pairwise"]["winner"] == "tie" and not out["pairwise"]["consistent"]
    [out] = PairwiseStage().parse(RECORD, replies("[Verdict] tie", "**[Verdict]** tie"))
    assert out["pairwise"] == {**out["pairwise"], "winner": "tie", "consistent": True}


REALISTIC = [
    ("[Reason Start]Answer 2 gives a time.[Reason End]\n[Verdict] 2", "2", "Answer 2 gives a time."),
    ("[Reason Start]Both fine.[Reason End]\n[Verdict]: tie", "tie", "Both fine."),
    ("**[Verdict]** Answer 1", "1", ""),
    ("[verdict] [2]", "2", ""),
    ("Answer 1 is vague while answer 2 is precise.\n\nVerdict: answer 2", "2", None),
    ("<think>first is short</think>\n[Reason Start]x[Reason End]\n[Verdict] 1.", "1", "x"),
    ("```json\n{\"reason\": \"More complete.\", \"verdict\": \"2\"}\n```", "2", "More complete."),
    ("[Reason Start]回答2更完整。[Reason End]\n[Verdict] 2", "2", "回答2更完整。"),
    ("理由：两者相当。\n结论：平局", "tie", None),
    ("【结论】回答1", "1", ""),
    ("2", "2", None),
]


@pytest.mark.parametrize("text,verdict,reason", REALISTIC)
def test_realistic_replies(text, verdict, reason):
    got, why = read_verdict(text)
    assert got == verdict
    if reason is not None:
        assert why == reason


@pytest.mark.parametrize("text", ["", "Both answers have merits.", "I prefer answer 1 but 2 is also good",
                                  "[Verdict] 12", "{\"verdict\": \"3\"}", "{\"verdict\": true}"])
def test_replies_without_a_usable_verdict_are_parse_errors(text):
    with pytest.raises(ParseError):
        read_verdict(text)


def test_no_text_is_no_output():
    with pytest.raises(ParseError, match="no_output"):
        read_verdict(None)


def test_one_unreadable_order_is_repaired_alone():
    stage = PairwiseStage()
    completions = replies("[Verdict] 2", "I cannot decide.")
    with pytest.raises(ParseError, match="order 2"):
        stage.parse(RECORD, completions)
    first, second = stage.repair_requests(RECORD, completions, ParseError("missing_verdict"))
    assert first == stage.requests(RECORD)[0]  # readable: asked exactly as before (a cache hit)
    assert second.messages[-2] == {"role": "assistant", "content": "I cannot decide."}
    assert "[Verdict]" in second.messages[-1]["content"]


def test_a_record_without_a_pair_is_a_clear_error():
    with pytest.raises(ValueError, match="no pair of answers"):
        PairwiseStage().requests({"id": "x", "question": "q?", "pair": {"a": "only one"}})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400), st.booleans())
def test_any_text_gives_a_verdict_or_a_parse_error(text, structured):
    try:
        verdict, reason = read_verdict(text, structured)
    except ParseError:
        return
    assert verdict in ("1", "2", "tie") and isinstance(reason, str) and len(reason) <= 1000


@given(st.lists(st.sampled_from(["a", "b", "tie"]), min_size=1, max_size=4))
def test_combined_winner_is_a_side_only_when_every_order_names_it(winners):
    result = combine([{"first": "a", "winner": w, "reason": ""} for w in winners])
    if len(set(winners)) == 1:
        assert result["winner"] == winners[0] and result["consistent"]
    else:
        assert result["winner"] == "tie" and not result["consistent"]
