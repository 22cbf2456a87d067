"""Trending-topic augmentation against the local server: model placement, fallbacks and the review list."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np

from condor.tree.augment import augment_tree, choice_request, read_topics
from condor.tree.embeddings import EmbeddingsUnavailable


class WordEmbedder:
    """A stand-in for MiniLM: hashed bag of lower-case words, so shared words mean similarity."""

    identity = "words"

    def __init__(self):
        self.calls = 0

    def embed(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), 4096))
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % 4096] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


class MissingEmbedder:
    identity = "missing"

    def embed(self, texts):
        raise EmbeddingsUnavailable("sentence-transformers is missing; install the embeddings extra")


SCRIPT = {
    # topic: (answer to "which domain", answer to "which branch")
    "Melatonin gummies": ('{"choice": 1}', '{"choice": 1}'),
    "Python 3.14 free-threading": ('{"choice": 2}', '{"choice": 1}'),
    "Cheap flights to Japan": ('{"choice": 3}', None),
    "Celebrity gossip": ('{"choice": 0}', None),
    "Rust ownership puzzles": ("I think maybe", None),
    "Quantum knitting": ("", None),
    "vitamins": ('{"choice": 1}', '{"choice": 2}'),
    "Sleep trackers": ('{"choice": 1}', "banana"),
}


def responder(body):
    text = body["messages"][-1]["content"]
    topic = re.search(r"New topic: (.+)", text).group(1).strip()
    first, second = SCRIPT[topic]
    return second if "It belongs to" in text else first


async def test_model_placement_with_fallback_and_review(fake_server, openai_backend, small_tree):
    fake_server.responder = responder
    embedder = WordEmbedder()
    report = await augment_tree(small_tree, list(SCRIPT), openai_backend, embedder=embedder, threshold=0.3, source="news.txt")
    await openai_backend.aclose()

    placed = {p.topic: (p.parent, p.method) for p in report.placed}
    assert placed == {
        "Melatonin gummies": (("Health", "Sleep"), "model"),
        "Python 3.14 free-threading": (("Programming", "Python"), "model"),
        "Cheap flights to Japan": (("Travel",), "model"),
        "Rust ownership puzzles": (("Programming", "Rust"), "embedding"),
        "Sleep trackers": (("Health",), "model"),
    }
    assert {p.topic: p.reason for p in report.review} == {
        "Celebrity gossip": "the model found no fitting domain",
        "Quantum knitting": report.review[-1].reason,
    }
    assert report.review[-1].reason.startswith("best match") and "< 0.3" in report.review[-1].reason
    assert [p.topic for p in report.already_present] == ["vitamins"]
    assert sorted((p.path, p.reason) for p in report.problems) == [
        (("Quantum knitting",), "empty_reply"),
        (("Rust ownership puzzles",), "not_a_choice"),
        (("Sleep trackers",), "not_a_choice"),
    ]
    # Two batched rounds: every topic once, then the topics whose domain has branches.
    assert fake_server.request_count == len(SCRIPT) + 4
    assert all(b["response_format"]["json_schema"]["schema"]["properties"]["choice"]["type"] == "integer" for b in fake_server.request_log)

    node = small_tree.find("Health > Sleep > Melatonin gummies")
    assert node.provenance["origin"] == "trending" and node.provenance["placed_by"] == "model"
    assert node.provenance["model"] == openai_backend.identity and node.provenance["source"] == "news.txt"
    by_embedding = small_tree.find("Programming > Rust > Rust ownership puzzles").provenance
    assert by_embedding["placed_by"] == "embedding" and by_embedding["similarity"] >= 0.3
    assert small_tree.version == 4 and small_tree.changelog[-1].operation == "augment" and small_tree.changelog[-1].added == 5
    # Existing leaves stay leaves: topics only go under branches.
    assert small_tree.find("Travel > Visas").is_leaf


async def test_embeddings_only_placement(small_tree):
    embedder = WordEmbedder()
    report = await augment_tree(small_tree, ["Python packaging tools", "Volcano surfing"], None, embedder=embedder, threshold=0.3)
    assert [(p.topic, p.parent) for p in report.placed] == [("Python packaging tools", ("Programming", "Python"))]
    assert [p.topic for p in report.review] == ["Volcano surfing"]
    assert embedder.calls == 2


async def test_without_embeddings_unusable_answers_go_to_review(fake_server, openai_backend, small_tree):
    fake_server.responder = lambda body: "no idea"
    report = await augment_tree(small_tree, ["Sleep apps"], openai_backend, embedder=MissingEmbedder())
    assert report.review[0].reason.startswith("no model placement and sentence-transformers is missing")
    assert [p.reason for p in report.problems] == ["not_a_choice", "embeddings_unavailable"]
    report = await augment_tree(small_tree, ["Sleep apps"], openai_backend, use_embeddings=False)
    await openai_backend.aclose()
    assert report.review[0].reason == "model answer unusable; embeddings disabled"
    assert small_tree.version == 3  # nothing placed, no new version


async def test_plain_text_choices_and_over_long_topics(fake_server, openai_backend, small_tree):
    fake_server.responder = lambda body: "Option 3 fits best." if "Which domain" in body["messages"][-1]["content"] else "0"
    report = await augment_tree(small_tree, ["Passport photos", "x" * 200], openai_backend, structured=False)
    await openai_backend.aclose()
    assert [(p.topic, p.parent) for p in report.placed] == [("Passport photos", ("Travel",))]
    assert report.review[0].reason == "longer than 120 characters"
    assert all("response_format" not in body for body in fake_server.request_log)


def test_choice_request_wording():
    en = choice_request("AI laws", ["Law", "Tech"], "en", structured=True, within=None)
    assert "1. Law\n2. Tech" in en.messages[0]["content"] and en.json_schema["properties"]["choice"]["maximum"] == 2
    zh = choice_request("人工智能立法", ["法律 > 合同"], "zh", structured=False, within="法律")
    assert "它属于“法律”" in zh.messages[0]["content"] and zh.json_schema is None


def test_read_topics(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_text("Sleep apps\n\n  sleep   APPS \nAI laws\n", encoding="utf-8")
    assert read_topics(path) == ["Sleep apps", "AI laws"]


def test_review_file_formats(tmp_path):
    from condor.tree.augment import Placement, write_review

    items = [Placement("Celebrity gossip", None, "model", reason="the model found no fitting domain")]
    write_review(items, tmp_path / "review.txt")
    assert read_topics(tmp_path / "review.txt") == ["Celebrity gossip"]
    write_review(items, tmp_path / "review.jsonl")
    row = json.loads((tmp_path / "review.jsonl").read_text(encoding="utf-8"))
    assert row == {"topic": "Celebrity gossip", "parent": None, "method": "model", "score": None, "reason": "the model found no fitting domain"}
