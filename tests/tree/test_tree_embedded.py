"""Expansion and augmentation once on the real SmolLM2-135M (llama.cpp): the pipeline works end to end.

The model is tiny, so these tests check plumbing, not quality: schema-constrained requests go through,
whatever comes back is either used or recorded as a problem, and every topic is accounted for.
"""

from __future__ import annotations

import asyncio

import pytest

from condor.config import EmbeddedSettings
from condor.tree.augment import augment_tree
from condor.tree.expand import expand_tree, tree_from_roots

pytestmark = [pytest.mark.slow, pytest.mark.embedded]

pytest.importorskip("llama_cpp", reason="the embedded extra is installed by `make test`")


@pytest.fixture(scope="module")
def smollm():
    from condor.llm.registry import build_backend

    backend = build_backend(EmbeddedSettings(max_tokens=64, temperature=0.0, n_ctx=2048, seed=1))
    yield backend
    asyncio.run(backend.aclose())


def test_expand_on_the_embedded_model(smollm):
    assert smollm.supports_schema
    tree = tree_from_roots(["Gardening", "Astronomy"])
    report = asyncio.run(expand_tree(tree, smollm, depth=1, breadth=3, max_tokens=64, temperature=0.0))
    assert report.requests == 2
    for root in ("Gardening", "Astronomy"):
        node = tree.find((root,))
        grew = len(node.children)
        failed = any(problem.path == (root,) for problem in report.problems)
        assert grew or failed, f"{root}: neither children nor a recorded problem"
        assert grew <= 3
        assert all(child.provenance["origin"] == "model" and child.provenance["model"] == smollm.identity for child in node.children)
    if report.added:
        assert tree.version == 2


def test_augment_on_the_embedded_model(smollm, small_tree):
    topics = ["Melatonin and sleep", "Python web frameworks", "Cheap flights"]
    report = asyncio.run(augment_tree(small_tree, topics, smollm, use_embeddings=False, max_tokens=16))
    accounted = [p.topic for p in report.placed + report.review + report.already_present]
    assert sorted(accounted) == sorted(topics)
    for placement in report.placed:
        assert small_tree.find(placement.parent + (placement.topic,)).provenance["placed_by"] == "model"
