"""Question diversity with the real offline all-MiniLM-L6-v2, and the question map in the report."""

from __future__ import annotations

import json

import pytest

import condor
from condor.report.diversity import question_diversity, read_reference
from condor.tree.embeddings import MiniLMEmbedder

pytestmark = [pytest.mark.slow, pytest.mark.embeddings]

TOPICS = ["bake sourdough bread at home", "change a flat bicycle tyre", "prepare for a job interview",
          "train a puppy to sit", "save money on groceries", "learn the basics of chess openings",
          "repot a house plant", "write a cover letter", "improve sleep quality", "plan a week of vegetarian meals"]


@pytest.fixture(scope="module")
def embedder():
    return MiniLMEmbedder()


def test_near_duplicates_and_spread_are_measured(embedder):
    varied = [f"How do I {topic}?" for topic in TOPICS]
    repeated = [f"How do I {TOPICS[0]}?", f"How can I {TOPICS[0]}?", f"How do I {TOPICS[0]} at home?",
                f"What is the way to {TOPICS[0]}?"] * 3
    spread = question_diversity(varied, embedder=embedder)
    narrow = question_diversity(repeated, embedder=embedder)
    assert spread.near_duplicate_rate == 0.0 and narrow.near_duplicate_rate == 1.0
    assert spread.mean_distance > narrow.mean_distance + 0.3
    assert spread.model == "all-MiniLM-L6-v2" and spread.sample == 10


def test_the_map_overlays_a_reference_dataset(embedder, tmp_path):
    ours = [f"How do I {topic}?" for topic in TOPICS]
    reference = tmp_path / "magpie.jsonl"
    reference.write_text("\n".join([json.dumps({"instruction": f"Explain {t} step by step."}) for t in TOPICS[:6]]
                                   + [json.dumps({"messages": [{"role": "user", "content": "What is a prime number?"}]}),
                                      "Give me three facts about the moon."]), encoding="utf-8")
    questions = read_reference(reference)
    assert len(questions) == 8 and questions[6] == "What is a prime number?"
    result = question_diversity(ours, questions, embedder=embedder, reference_name="magpie")
    assert result.groups == ["this run", "magpie"] and len(result.points) == 18
    assert sorted({p[2] for p in result.points}) == [0, 1]
    assert result.reference["questions"] == 8 and 0 < result.reference["mean_distance"] < 1


def test_the_report_shows_diversity_and_the_map(run_copy, counts, tmp_path):
    reference = tmp_path / "ref.txt"
    reference.write_text("\n".join(f"Tell me how to {t}." for t in TOPICS), encoding="utf-8")
    report = condor.build_report(run_copy, tmp_path / "r.html", reference=reference)
    text = report.path.read_text(encoding="utf-8")
    assert "question diversity" in text and "Question map" in text and "ref.txt (10)" in text
    assert f"this run ({counts.kept})" in text
    assert text.count('class="c2 dot"') == 10 and text.count('class="c1 dot"') == counts.kept
