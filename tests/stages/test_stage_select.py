"""select_version: last and best modes, ties, regressions, missing scores, cut-off versions."""

import pytest

from condor.stages.select import select_version


def record(answers, scores=None, finish=None):
    versions = [
        {"round": i, "answer": a, "finish_reason": (finish or {}).get(i, "stop"), "source": "answer" if i == 0 else "refine"}
        for i, a in enumerate(answers)
    ]
    out = {"id": "r", "versions": versions}
    if scores is not None:
        out["scores"] = [{"version": i, "score": s, "reason": ""} for i, s in scores.items()]
    return out


def chosen(rec, mode):
    out = select_version(rec, mode)
    assert out["answer"] == rec["versions"][out["chosen"]["version"]]["answer"]
    assert out["chosen"]["mode"] == mode
    return out["chosen"]


# ---------------------------------------------------------------- last


def test_last_picks_the_newest_version():
    c = chosen(record(["a", "b", "c"]), "last")
    assert c["version"] == 2 and "version 2 is the last version" in c["reason"] and c["fallback"] is False


def test_last_with_only_the_original():
    c = chosen(record(["a"]), "last")
    assert c["version"] == 0 and "only version" in c["reason"]


def test_last_ignores_scores():
    assert chosen(record(["a", "b"], {0: 9, 1: 2}), "last")["version"] == 1


def test_last_skips_a_cut_off_refinement():
    c = chosen(record(["a", "b", "c"], finish={2: "length"}), "last")
    assert c["version"] == 1 and "cut off" in c["reason"]


def test_when_every_version_is_cut_off_the_last_is_kept():
    c = chosen(record(["a", "b"], finish={0: "length", 1: "length"}), "last")
    assert c["version"] == 1 and "cut off" not in c["reason"]


# ---------------------------------------------------------------- best


def test_best_takes_an_improvement():
    c = chosen(record(["a", "b", "c"], {0: 6, 1: 7, 2: 8}), "best")
    assert c["version"] == 2 and c["score"] == 8
    assert c["reason"] == "version 2 scored 8 > original 6"


def test_best_is_not_simply_the_last():
    assert chosen(record(["a", "b", "c"], {0: 5, 1: 9, 2: 7}), "best")["version"] == 1


def test_best_never_accepts_a_regression():
    c = chosen(record(["a", "b", "c"], {0: 7, 1: 5, 2: 6}), "best")
    assert c["version"] == 0 and c["score"] == 7
    assert "version 2 scored 6 < original 7" in c["reason"] and "kept the original" in c["reason"]


def test_best_tie_with_the_original_keeps_the_original():
    c = chosen(record(["a", "b"], {0: 7, 1: 7}), "best")
    assert c["version"] == 0 and "7 = original 7" in c["reason"]


def test_best_tie_between_refinements_keeps_the_earlier():
    assert chosen(record(["a", "b", "c"], {0: 5, 1: 8, 2: 8}), "best")["version"] == 1


def test_best_unscored_refinements_are_never_chosen():
    c = chosen(record(["a", "b", "c"], {0: 5, 2: 6}), "best")
    assert c["version"] == 2
    c = chosen(record(["a", "b"], {0: 5}), "best")
    assert c["version"] == 0 and "no refinement has a judge score" in c["reason"]


def test_best_without_any_scores_falls_back_to_last():
    c = chosen(record(["a", "b", "c"]), "best")
    assert c["version"] == 2 and c["fallback"] is True and c["score"] is None
    assert "no judge score" in c["reason"] and "last-version rule" in c["reason"]


def test_best_without_a_score_for_the_original_takes_the_best_scored_version():
    c = chosen(record(["a", "b", "c"], {1: 9, 2: 3}), "best")
    assert c["version"] == 1 and c["fallback"] is True and c["score"] == 9
    assert "no judge score" in c["reason"] and "highest score" in c["reason"]


def test_best_with_a_cut_off_original_never_picks_a_worse_version():
    c = chosen(record(["a", "b", "c"], {0: 7, 1: 9, 2: 3}, finish={0: "length"}), "best")
    assert c["version"] == 1 and c["score"] == 9 and "cut off" in c["reason"]
    # ties go to the earlier version
    assert chosen(record(["a", "b", "c"], {1: 6, 2: 6}), "best")["version"] == 1


def test_best_with_only_the_original():
    c = chosen(record(["a"], {0: 4}), "best")
    assert c["version"] == 0 and c["reason"] == "the original is the only version" and c["fallback"] is False


def test_best_skips_cut_off_versions_even_with_high_scores():
    c = chosen(record(["a", "b", "c"], {0: 5, 1: 6, 2: 9}, finish={2: "length"}), "best")
    assert c["version"] == 1


def test_best_with_a_cut_off_original_falls_back():
    c = chosen(record(["a", "b"], {0: 9, 1: 4}, finish={0: "length"}), "best")
    assert c["version"] == 1 and c["fallback"] is True and "cut off" in c["reason"]


def test_malformed_score_entries_are_ignored():
    rec = record(["a", "b"])
    rec["scores"] = [
        {"version": 0, "score": 5},
        {"version": 1, "score": 99},
        {"version": 7, "score": 9},
        {"version": True, "score": 9},
        "junk",
        {"version": 1, "score": None},
    ]
    c = chosen(rec, "best")
    assert c["version"] == 0 and "no refinement has a judge score" in c["reason"]


def test_first_grade_of_a_version_counts():
    rec = record(["a", "b"])
    rec["scores"] = [{"version": 0, "score": 5}, {"version": 1, "score": 6}, {"version": 1, "score": 2}]
    assert chosen(rec, "best")["version"] == 1


def test_input_record_is_not_modified():
    rec = record(["a", "b"], {0: 1, 1: 2})
    out = select_version(rec, "best")
    assert "chosen" not in rec and "answer" not in rec and out["versions"] is rec["versions"]


@pytest.mark.parametrize("bad", [{"id": "x"}, {"id": "x", "versions": []}, {"id": "x", "versions": "a"}])
def test_records_without_versions_raise(bad):
    with pytest.raises(ValueError, match="no answer versions"):
        select_version(bad, "last")


def test_unknown_mode_raises():
    with pytest.raises(ValueError, match="unknown selection mode"):
        select_version(record(["a"]), "worst")
