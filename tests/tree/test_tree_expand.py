"""Tree expansion against the real local OpenAI-compatible server, with scripted and malformed answers."""

from __future__ import annotations

import json
import re

import pytest

from condor.tree.expand import expand_tree, subtopic_request, tree_from_roots
from condor.tree.model import KnowledgeTree, TreeError, TreeNode


WORDS = """Apple Bridge Cactus Dolphin Ember Falcon Glacier Harbor Island Jungle Kettle Lantern Meadow Nectar
Orchid Pepper Quartz Ribbon Saddle Tundra Umbrella Violin Walnut Yarrow Zephyr Anchor Blossom Canyon Dagger Easel
Fjord Gravel""".split()


def user_text(body: dict) -> str:
    return [m["content"] for m in body["messages"] if m["role"] == "user"][-1]


def asked_path(body: dict) -> str:
    match = re.search(r"(?:Topic path|主题路径)：?:? ?(.+)", user_text(body))
    return match.group(1).strip()


class CountingBackend:
    """Wraps a backend to count generate() calls: one per tree level is the batching contract."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []
        self.identity, self.supports_schema = inner.identity, inner.supports_schema

    async def generate(self, requests):
        self.calls.append(len(requests))
        return await self.inner.generate(requests)


async def test_structured_expansion_two_levels(fake_server, openai_backend):
    words = iter(WORDS)

    def responder(body):
        assert body["response_format"]["type"] == "json_schema"
        return json.dumps({"subtopics": [next(words) for _ in range(4)]})

    fake_server.responder = responder
    tree = tree_from_roots(["Health", "Law"], name="seed")
    backend = CountingBackend(openai_backend)
    report = await expand_tree(tree, backend, depth=2, breadth=3, max_tokens=200)
    await openai_backend.aclose()

    assert backend.calls == [2, 6]  # one batched call per level
    assert report.requests == 8 and not report.problems
    assert len(tree.leaves()) == 18 and len(report.added) == 24
    assert all(len(path) == 3 for path in tree.leaves())
    node = tree.find(report.added[0])
    assert node.provenance["origin"] == "model"
    assert node.provenance["model"] == openai_backend.identity
    assert re.match(r"\d{4}-\d\d-\d\dT", node.provenance["added"])
    assert tree.version == 2 and tree.changelog[-1].operation == "expand" and tree.changelog[-1].added == 24
    assert all(b["max_tokens"] == 200 for b in fake_server.request_log)


async def test_malformed_answers_become_problems_not_crashes(fake_server, openai_backend):
    answers = {
        "Health": "",
        "Law": '{"subtopics": []}',
        "Travel": '{"subtopics": ["Visas", "Ok so {"]}',
        "Music": '{"subtopics": ["' + "very long " * 20 + '", "Jazz"]}',
        "Food": '{"subtopics": [',
        "Sport": '{"subtopics": ["Football", "football", "Foot-ball", "Sport", "Tennis"]}',
    }
    fake_server.responder = lambda body: answers[asked_path(body)]
    tree = tree_from_roots(list(answers))
    report = await expand_tree(tree, openai_backend, depth=1, breadth=5)
    await openai_backend.aclose()

    reasons = {p.path: p.reason for p in report.problems}
    assert reasons == {
        ("Health",): "empty_reply",
        ("Law",): "no_subtopics",
        ("Music",): "name_too_long",
        ("Food",): "malformed_json",
        ("Sport",): "near_duplicate",
    }
    assert [c.name for c in tree.find("Music").children] == ["Jazz"]
    assert [c.name for c in tree.find("Travel").children] == ["Visas"]
    # Exact repeats go in parsing; near-duplicates of a sibling or of the parent are dropped, counted
    # and listed among the problems.
    assert [c.name for c in tree.find("Sport").children] == ["Football", "Tennis"]
    assert report.duplicates == 2
    assert str(report.problems[0]) == "Health: empty_reply"


async def test_failed_requests_are_recorded_and_transient_ones_retried(fake_server, openai_backend):
    fake_server.responder = lambda body: '{"subtopics": ["A", "B"]}'
    fake_server.queue_faults("500", "400")  # the first is retried, the second is permanent
    tree = tree_from_roots(["One", "Two", "Three"])
    report = await expand_tree(tree, openai_backend, depth=1, breadth=2)
    await openai_backend.aclose()
    assert [p.reason for p in report.problems] == ["backend_error"]
    assert len(report.added) == 4


async def test_plain_text_answers_in_chinese(fake_server, openai_backend):
    lists = {"健康": "好的，以下是子主题：\n1. 睡眠\n2. 饮食\n3. 运动", "法律": "- 合同\n- 婚姻法\n- 劳动法"}

    def responder(body):
        assert "response_format" not in body
        assert "每行写一个" in user_text(body)
        return lists[asked_path(body)]

    fake_server.responder = responder
    tree = tree_from_roots(list(lists), language="zh")
    report = await expand_tree(tree, openai_backend, depth=1, breadth=2, structured=False)
    await openai_backend.aclose()
    assert tree.leaves() == [("健康", "睡眠"), ("健康", "饮食"), ("法律", "合同"), ("法律", "婚姻法")]
    assert not report.problems


async def test_expand_under_a_branch_only(fake_server, openai_backend, small_tree):
    fake_server.responder = lambda body: '{"subtopics": ["Deep"]}'
    before = set(small_tree.leaves())
    report = await expand_tree(small_tree, openai_backend, depth=1, breadth=1, under=("Programming",))
    await openai_backend.aclose()
    assert {p[:-1] for p in report.added} == {p for p in before if p[0] == "Programming"}
    assert fake_server.request_count == 3
    assert "under Programming" in small_tree.changelog[-1].summary
    with pytest.raises(TreeError):
        await expand_tree(small_tree, openai_backend, under=("Nope",))


def test_requests_and_roots():
    request = subtopic_request(("Health", "Sleep"), 5, "en", structured=True, max_tokens=100, seed=3)
    assert request.json_schema["properties"]["subtopics"]["maxItems"] == 5
    assert "Health > Sleep" in request.messages[-1]["content"] and request.seed == 3
    assert subtopic_request(("Salud",), 5, "es", structured=False).json_schema is None
    assert "code 'es'" in subtopic_request(("Salud",), 5, "es", structured=False).messages[-1]["content"]
    with pytest.raises(TreeError, match="no root tags"):
        tree_from_roots(["", "  "])
    with pytest.raises(TreeError):
        tree_from_roots(["A", "a"])
    tree = KnowledgeTree("t", domains=[TreeNode("A")])
    with pytest.raises(ValueError):
        import asyncio

        asyncio.run(expand_tree(tree, None, depth=0))  # type: ignore[arg-type]
