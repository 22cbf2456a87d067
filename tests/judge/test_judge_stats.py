"""Judge statistics: Wilson intervals, position consistency, the length-controlled win rate, grade gains."""

import random

import pytest
from hypothesis import given, strategies as st

from condor.judge.stats import PairOutcome, grade_stats, mean_interval, pairwise_stats, wilson


def test_wilson_matches_the_textbook_values():
    interval = wilson(8, 10)
    assert interval.value == 0.8
    assert interval.low == pytest.approx(0.4902, abs=1e-4) and interval.high == pytest.approx(0.9433, abs=1e-4)
    assert wilson(0, 20).low == 0.0 and wilson(0, 20).high == pytest.approx(0.1611, abs=1e-4)
    assert wilson(0, 0).as_dict() == {"value": 0.0, "low": 0.0, "high": 1.0}


@given(st.integers(min_value=1, max_value=5000), st.data())
def test_wilson_intervals_hold_the_estimate_and_stay_in_range(n, data):
    k = data.draw(st.integers(min_value=0, max_value=n))
    interval = wilson(k, n)
    assert 0.0 <= interval.low <= interval.value <= interval.high <= 1.0


def _outcomes(winners, length_a=100, length_b=100, consistent=True):
    return [PairOutcome(w, consistent, length_a, length_b) for w in winners]


def test_counts_rates_and_position_consistency():
    items = _outcomes(["b"] * 6 + ["a"] * 2) + _outcomes(["tie"] * 2, consistent=False)
    stats = pairwise_stats(items, length_control=False)
    assert (stats.pairs, stats.b_wins, stats.ties, stats.a_wins) == (10, 6, 2, 2)
    assert stats.b_win_rate == wilson(6, 10) and stats.tie_rate == wilson(2, 10)
    assert stats.b_win_rate_with_ties.value == pytest.approx(0.7)
    assert stats.position_consistency.value == pytest.approx(0.8)
    assert stats.length_controlled_win_rate is None
    assert stats.as_dict()["b_win_rate"] == wilson(6, 10).as_dict()


def test_length_control_discounts_a_judge_that_rewards_length():
    rng = random.Random(1)
    items = []
    for _ in range(300):
        # b is usually the longer answer, and the judge picks whichever answer is longer.
        difference = rng.gauss(150, 200)
        items.append(PairOutcome("b" if difference > 0 else "a", True, 500, int(500 + difference)))
    stats = pairwise_stats(items)
    raw, lc = stats.b_win_rate.value, stats.length_controlled_win_rate
    assert raw > 0.7 and stats.mean_length_difference > 100
    assert lc.value < raw - 0.15
    assert lc.low <= lc.value <= lc.high


def test_length_control_leaves_a_length_blind_judge_alone():
    rng = random.Random(2)
    items = [PairOutcome("b" if rng.random() < 0.7 else "a", True, 400, 400 + int(rng.gauss(0, 100))) for _ in range(400)]
    stats = pairwise_stats(items)
    assert abs(stats.length_controlled_win_rate.value - stats.b_win_rate.value) < 0.06


def test_one_sided_results_need_no_fit():
    stats = pairwise_stats(_outcomes(["b"] * 5, 10, 20))
    assert stats.length_controlled_win_rate.value == 1.0


def test_grade_stats_pair_the_original_with_the_final_answer():
    graded = [({0: 5, 1: 7}, 1), ({0: 6, 1: 6}, 1), ({0: 8, 1: 7}, 0), ({1: 9}, 1)]
    stats = grade_stats(graded)
    assert stats.records == 4
    assert [r["round"] for r in stats.by_round] == [0, 1] and stats.by_round[1]["n"] == 4
    assert stats.gain.value == pytest.approx((2 + 0 + 0) / 3)
    assert (stats.improved, stats.same, stats.worse) == (1, 2, 0)
    assert mean_interval([]) is None and mean_interval([3.0]).low == 3.0
