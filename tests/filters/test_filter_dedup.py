"""Exact and near-duplicate detection, in English and Chinese, first occurrence kept."""

import pytest
from hypothesis import given, settings, strategies as st

from condor.filters.dedup import Deduplicator, Duplicate, find_duplicates, normalize, shingles


def recs(*questions):
    return [{"id": f"q{i}", "question": q} for i, q in enumerate(questions)]


@pytest.mark.parametrize(
    "a, b",
    [
        ("What is inflation?", "what is   INFLATION ?"),
        ("What is inflation?", "What is inflation"),
        ("Ｗｈａｔ　ｉｓ inflation？", "What is inflation?"),
        ("什么是通货膨胀？", "什么是 通货膨胀"),
        ("什么是通货膨胀？", "什么是通货膨胀?"),
        ("Café — “quoted”", "café quoted"),
    ],
)
def test_normalize_equates_superficial_variants(a, b):
    assert normalize(a) == normalize(b)


def test_normalize_keeps_meaningful_differences():
    assert normalize("What is 2+3?") != normalize("What is 2=3?")
    assert normalize("cats") != normalize("cat")
    assert normalize("hello world") == "hello world"
    assert normalize("Python 的 asyncio 库") == "python的asyncio库"
    # Operators are content, not punctuation.
    assert normalize("What is x = a * b?") != normalize("What is x = a b?")
    assert normalize("Simplify a - b") != normalize("Simplify a b")
    assert normalize("Simplify a / b") != normalize("Simplify a b")
    assert normalize("What is the square of -5?") != normalize("What is the square of 5?")
    assert normalize("What does C# do?") != normalize("What does C do?")


def test_shingles():
    assert shingles("abcd") == {"abc", "bcd"}
    assert shingles("通货膨胀") == {"通货", "货膨", "膨胀"}
    assert shingles("abcd", 2) == {"ab", "bc", "cd"}
    assert shingles("ab") == {"ab"}
    assert shingles("") == set()


def test_exact_duplicates_keep_the_first():
    found = find_duplicates(recs("What is inflation?", "Why do prices rise?", "what is inflation"))
    assert found == {"q2": Duplicate("exact_duplicate", "q0", 1.0)}
    assert "q0" in found["q2"].detail


def test_near_duplicates_english():
    found = find_duplicates(
        recs(
            "How does the central bank use interest rates to fight inflation in an overheating economy?",
            "Describe the plot of Hamlet in three sentences.",
            "How does a central bank use interest rates to fight inflation in an overheating economy?",
        )
    )
    assert set(found) == {"q2"}
    assert found["q2"].reason == "near_duplicate" and found["q2"].duplicate_of == "q0"
    assert 0.8 <= found["q2"].similarity < 1 and "similarity" in found["q2"].detail


def test_near_duplicates_chinese():
    found = find_duplicates(
        recs(
            "中央银行如何通过调整利率来应对经济过热时期的通货膨胀问题？",
            "请用三句话概括《哈姆雷特》的剧情。",
            "中央银行如何通过调整利率来应对经济过热时的通货膨胀问题？",
        )
    )
    assert set(found) == {"q2"} and found["q2"].duplicate_of == "q0"


def test_distinct_questions_on_one_topic_are_kept():
    found = find_duplicates(
        recs(
            "What is insomnia and how common is it among adults?",
            "Design a four-week cognitive behavioural therapy plan for a night-shift nurse with insomnia.",
            "Why does drinking coffee in the afternoon make it harder to fall asleep?",
            "什么是失眠？",
            "失眠的认知行为疗法包括哪些步骤？",
        )
    )
    assert found == {}


def test_threshold_is_configurable():
    questions = recs("The quick brown fox jumps over the lazy dog.", "The quick brown fox leaps over the lazy cat.")
    assert find_duplicates(questions, threshold=0.95) == {}
    assert set(find_duplicates(questions, threshold=0.3)) == {"q1"}


def test_the_most_similar_earlier_text_is_reported():
    dedup = Deduplicator(threshold=0.25)
    assert dedup.check("a", "alpha bravo charlie delta echo foxtrot golf hotel india juliet") is None
    assert dedup.check("b", "kilo lima mike november oscar papa quebec romeo sierra tango") is None
    # about 0.27 similar to "a" and 0.5 to "b"
    hit = dedup.check("n", "alpha bravo charlie delta echo kilo lima mike november oscar papa quebec romeo")
    assert hit is not None and hit.reason == "near_duplicate" and hit.duplicate_of == "b"


def test_streaming_and_other_keys():
    dedup = Deduplicator()
    assert dedup.check("x1", "Explain photosynthesis to a ten-year-old.") is None
    assert dedup.check("x2", "explain photosynthesis to a ten year old").reason == "exact_duplicate"
    with pytest.raises(ValueError, match="already seen"):
        dedup.check("x1", "anything")
    found = find_duplicates([{"id": "a", "answer": "same"}, {"id": "b", "answer": "Same."}], key="answer")
    assert set(found) == {"b"}


def test_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        Deduplicator(threshold=0)
    with pytest.raises(ValueError, match="no text field"):
        find_duplicates([{"id": "a"}])
    with pytest.raises(ValueError, match="string 'id'"):
        find_duplicates([{"question": "q"}])


def test_empty_and_punctuation_only_texts_are_exact_duplicates_of_each_other():
    assert find_duplicates(recs("", "?!", "real question here")) == {"q1": Duplicate("exact_duplicate", "q0", 1.0)}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=15))
def test_every_flag_points_to_an_earlier_kept_record(texts):
    records = recs(*texts)
    found = find_duplicates(records)
    order = {r["id"]: i for i, r in enumerate(records)}
    for record_id, duplicate in found.items():
        assert order[duplicate.duplicate_of] < order[record_id]
        assert duplicate.duplicate_of not in found


def test_normalize_spells_out_hyphens_between_letters_only():
    assert normalize("a ten-year-old plan") == "a ten year old plan"
    assert normalize("x-5 and 3-4") == "x-5 and 3-4"
    assert normalize("日本-中国") == normalize("日本中国")  # letters of any script
    assert normalize("Ω-ω") == "ω ω"


def test_normalize_remembers_a_bounded_number_of_characters(monkeypatch):
    from condor.filters import dedup

    table = dedup._Spaces()
    monkeypatch.setattr(dedup, "_SPACES", table)
    monkeypatch.setattr(dedup._Spaces, "LIMIT", 50)
    text = "".join(chr(0x4E00 + i) for i in range(500)) + "，!"
    assert normalize(text) == "".join(chr(0x4E00 + i) for i in range(500))
    assert len(table) == 50  # hostile text with every character there is cannot grow it without end
