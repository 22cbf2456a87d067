"""The default trees shipped in the package: broad, balanced and clean (the issue's acceptance numbers)."""

from __future__ import annotations

import pytest

from condor.tree.io import resolve_tree
from condor.tree.model import MAX_NAME_CHARS, name_key
from condor.tree.stats import duplicate_siblings, tree_stats


@pytest.fixture(scope="module", params=["en", "zh"])
def shipped(request):
    warnings: list[str] = []
    tree = resolve_tree(request.param, warnings)
    return tree, warnings


def test_breadth_and_balance(shipped):
    tree, _ = shipped
    stats = tree_stats(tree)
    assert stats["domains"] >= 60
    assert stats["leaves"] >= 1500
    too_small = {name: entry["leaves"] for name, entry in stats["per_domain"].items() if entry["leaves"] < 12}
    assert not too_small, f"domains with fewer than 12 leaves: {too_small}"
    assert stats["leaves_per_language"] == {tree.language: stats["leaves"]}


def test_loads_without_normalisation_and_has_no_duplicates(shipped):
    tree, warnings = shipped
    assert warnings == []
    assert duplicate_siblings(tree) == []
    assert all(len(path[-1]) <= MAX_NAME_CHARS for path in tree)


def test_names_are_short_and_in_the_trees_language(shipped):
    tree, _ = shipped
    leaves = tree.leaves()
    limit = 60 if tree.language == "en" else 20
    long_names = [path[-1] for path in leaves if len(path[-1]) > limit]
    assert len(long_names) <= len(leaves) // 100, long_names[:10]
    if tree.language == "zh":
        def has_han(text: str) -> bool:
            return any("\u4e00" <= ch <= "\u9fff" for ch in text)

        not_chinese = [path[-1] for path in leaves if not has_han(path[-1])]
        # A few established Latin names (Python, DNA) are natural in Chinese text; most tags are not.
        assert len(not_chinese) <= len(leaves) // 20, not_chinese[:20]


def test_covers_everyday_life_and_the_sciences():
    tree = resolve_tree("en")
    text = " ".join(name_key(path[-1]) for path in tree if len(path) <= 2)
    for topic in ("health", "travel", "food", "financ", "parent", "law", "math", "programming", "medic", "physics", "histor"):
        assert topic in text, f"no English domain or topic mentions {topic!r}"
