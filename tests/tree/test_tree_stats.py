"""Tree statistics and the text views built on them."""

from __future__ import annotations

from condor.tree.model import TreeNode
from condor.tree.stats import duplicate_siblings, tree_stats
from condor.tree.view import outline, stats_lines


def test_counts_per_level_domain_and_language(small_tree):
    small_tree.add(("Travel",), TreeNode("签证", language="zh"))
    stats = tree_stats(small_tree)
    assert stats["domains"] == 3 and stats["leaves"] == 10 and stats["nodes"] == 17 and stats["depth"] == 3
    assert stats["nodes_per_level"] == {"1": 3, "2": 7, "3": 7}
    assert stats["leaves_per_language"] == {"en": 9, "zh": 1}
    assert stats["leaves_per_domain"] == {"min": 3, "median": 3, "max": 4}
    assert stats["per_domain"]["Programming"] == {"nodes": 6, "leaves": 3, "depth": 3}
    assert any("leaves per domain: min 3, median 3, max 4" in line for line in stats_lines(stats))


def test_outline_with_depth_and_ids(small_tree):
    lines = list(outline(small_tree, depth=1))
    assert lines == ["small (language en, version 3)", "  Health  [+4 leaves]", "  Programming  [+3 leaves]", "  Travel  [+2 leaves]"]
    full = list(outline(small_tree, ids=True))
    assert full[3].startswith("      Insomnia  #") and len(full) == 17


def test_duplicate_siblings_found_in_hand_built_trees(small_tree):
    assert duplicate_siblings(small_tree) == []
    small_tree.find("Travel").children.append(TreeNode("visas"))
    assert duplicate_siblings(small_tree) == [(("Travel",), "visas")]
