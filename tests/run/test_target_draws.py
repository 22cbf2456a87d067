"""How large the next draw of a ``--target`` run is (the loop itself runs end to end in
test_quality_gates_e2e.py)."""

from __future__ import annotations

from hypothesis import given, strategies as st

from condor.config import load_config
from condor.run.settings import effective_settings
from condor.run.target import MARGIN, _one_at_a_time, items_to_draw


def test_a_server_draws_for_the_yield_so_far_with_a_margin():
    # 3 rows kept from 6 items, 5 short: 10 items at that yield, and the margin on top.
    assert MARGIN == 1.25 and items_to_draw(5, 3, 6, sequential=False) == 13
    assert items_to_draw(5, 0, 6, sequential=False) == 13  # nothing kept yet: half a row per item assumed


def test_one_request_at_a_time_draws_for_at_least_a_row_per_item():
    # The demo's second draw: 3 kept from 6 items, 5 short. A low yield costs another pass, not extra rows.
    assert items_to_draw(5, 3, 6, sequential=True) == 5
    assert items_to_draw(6, 9, 6, sequential=True) == 4  # a yield above one row per item is believed
    assert items_to_draw(1, 0, 0, sequential=True) == 1


@given(needed=st.integers(1, 500), kept=st.integers(0, 500), items=st.integers(0, 500))
def test_a_draw_is_never_empty_and_sequential_ones_are_never_larger(needed, kept, items):
    one = items_to_draw(needed, kept, items, sequential=True)
    many = items_to_draw(needed, kept, items, sequential=False)
    assert 1 <= one <= max(needed, 1) and one <= many


def test_the_embedded_model_and_a_server_at_concurrency_one_answer_one_request_at_a_time():
    assert _one_at_a_time(effective_settings(load_config(None, {})))
    server = {"llm.base_url": "http://127.0.0.1:9/v1", "llm.model": "m"}
    assert not _one_at_a_time(effective_settings(load_config(None, server)))
    assert _one_at_a_time(effective_settings(load_config(None, {**server, "llm.concurrency": 1})))
    # Several replicas, or Ray workers each with their own model, answer many at once.
    two = {**server, "llm.concurrency": 1, "llm.base_url": ["http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"]}
    assert not _one_at_a_time(effective_settings(load_config(None, two)))
    assert not _one_at_a_time(effective_settings(load_config(None, {"executor": "ray"})))
