"""Near-duplicate sibling names: normalised text and MinHash over character 3-grams, Chinese included."""

from __future__ import annotations

import pytest

from condor.tree.dedup import NearDuplicateFilter, char_ngrams, normalise


def test_normalise_drops_case_width_punctuation_and_spaces():
    assert normalise("Sleep-Hygiene!") == normalise("sleep hygiene") == "sleephygiene"
    assert normalise("ＡＩ　安全。") == "ai安全"


def test_short_chinese_names_still_have_several_grams():
    assert len(char_ngrams("足球")) == 2
    assert char_ngrams("") == {"\x02\x03"}


@pytest.mark.parametrize(
    "kept, new, duplicate",
    [
        ("Sleep Hygiene", "sleep-hygiene", True),
        ("Machine learning basics", "Machine-learning basic", True),
        ("Retirement account planning", "Retirement accounts planning", True),
        ("Sleep Hygiene", "Insomnia", False),
        ("Python decorators", "Python packaging", False),
        ("中国古代史", "中国古代史。", True),
        ("中国古代史", "中国·古代 史", True),
        ("中国古代史", "中国近代史", False),
        ("足球", "篮球", False),
    ],
)
def test_near_duplicates(kept, new, duplicate):
    siblings = NearDuplicateFilter(names=[kept])
    assert (siblings.check(new) == kept) is duplicate


def test_offer_keeps_only_new_names():
    siblings = NearDuplicateFilter()
    assert siblings.offer("Budget travel") is None
    assert siblings.offer("Budget  Travel") == "Budget travel"
    assert siblings.offer("Luxury travel") is None
    with pytest.raises(ValueError):
        NearDuplicateFilter(threshold=0)
