"""A schema's string bounds fitted to the token budget (condor.llm.schema_budget)."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from condor.llm.schema_budget import CHARS_PER_TOKEN, TOKENS_FOR_OBJECT, TOKENS_PER_FIELD, fit_to_budget
from condor.stages.critique import SCHEMA as CRITIQUE_SCHEMA
from condor.stages.questions import SCHEMA as QUESTIONS_SCHEMA


def test_a_budget_with_room_leaves_the_schema_as_it_is():
    assert fit_to_budget(CRITIQUE_SCHEMA, 2048) is CRITIQUE_SCHEMA
    assert fit_to_budget(CRITIQUE_SCHEMA, None) is CRITIQUE_SCHEMA


def test_a_small_budget_tightens_every_bounded_string_so_the_object_fits():
    before = copy.deepcopy(CRITIQUE_SCHEMA)
    fitted = fit_to_budget(CRITIQUE_SCHEMA, 320)
    assert CRITIQUE_SCHEMA == before, "the stage's own schema must not change"
    bounds = [value["maxLength"] for value in fitted["properties"].values()]
    fields = len(fitted["properties"])
    assert sum(bounds) <= (320 - TOKENS_FOR_OBJECT - TOKENS_PER_FIELD * fields) * CHARS_PER_TOKEN
    # In proportion: the same bound for sections declared alike, and still room to say something.
    assert len(set(bounds)) == 1 and bounds[0] >= 200
    assert all(value["minLength"] <= value["maxLength"] for value in fitted["properties"].values())


def test_unbounded_strings_stay_unbounded():
    # A question stopped at a bound would be cut mid-sentence with finish_reason "stop": its
    # truncation must stay visible, so its strings are never given a bound.
    assert fit_to_budget(QUESTIONS_SCHEMA, 64) is QUESTIONS_SCHEMA


def test_bounds_never_drop_below_the_minimum():
    schema = {"type": "object", "properties": {"reason": {"type": "string", "minLength": 40, "maxLength": 400}}}
    assert fit_to_budget(schema, 20)["properties"]["reason"]["maxLength"] == 40
    unmarked = {"type": "object", "properties": {"reason": {"type": "string", "maxLength": 400}}}
    assert fit_to_budget(unmarked, 11)["properties"]["reason"]["maxLength"] == 3


def test_shaped_strings_and_hopeless_budgets_are_left_alone():
    dated = {"type": "object", "properties": {"day": {"type": "string", "pattern": "^[0-9-]+$", "maxLength": 10},
                                              "note": {"type": "string", "maxLength": 300}}}
    fitted = fit_to_budget(dated, 40)
    assert fitted["properties"]["day"]["maxLength"] == 10 and fitted["properties"]["note"]["maxLength"] < 300
    # Not even room for the keys: squeezing the strings would not make the reply whole.
    assert fit_to_budget(dated, 8) is dated
    empty = {"type": "object", "properties": {"a": {"type": "string", "maxLength": 0}}}
    assert fit_to_budget(empty, 5) is empty


@given(st.integers(min_value=-5, max_value=5000), st.lists(st.integers(min_value=0, max_value=3000), min_size=1, max_size=5))
def test_any_budget_gives_bounds_within_the_declared_ones(max_tokens, bounds):
    schema = {"type": "object", "properties": {f"f{i}": {"type": "string", "maxLength": b} for i, b in enumerate(bounds)}}
    fitted = fit_to_budget(schema, max_tokens)
    for name, value in fitted["properties"].items():
        declared = schema["properties"][name]["maxLength"]
        assert value["maxLength"] == declared or 1 <= value["maxLength"] < declared
