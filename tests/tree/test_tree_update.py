"""Versioned updates: diff on tag paths and merge as a union with provenance and changelog."""

from __future__ import annotations

import copy

from condor.tree.io import dumps_tree, loads_tree
from condor.tree.model import KnowledgeTree, TreeNode
from condor.tree.stats import tree_stats
from condor.tree.update import diff_trees, merge_trees


def test_diff_lists_added_and_removed_paths(small_tree):
    new = copy.deepcopy(small_tree)
    new.add(("Travel",), TreeNode("Hostels"))
    new.find("Health").children.pop()  # drops Nutrition and its two leaves
    new.find("Programming > Rust").children[0].name = "ownership"  # case only: not a change
    diff = diff_trees(small_tree, new)
    assert diff.added == [("Travel", "Hostels")]
    assert diff.removed == [("Health", "Nutrition"), ("Health", "Nutrition", "Vitamins"), ("Health", "Nutrition", "Meal planning")]
    assert (diff.added_leaves, diff.removed_leaves) == (1, 2)
    assert diff.lines()[0] == "+ Travel > Hostels" and diff.lines()[1] == "- Health > Nutrition"
    assert diff.to_dict()["added"] == [["Travel", "Hostels"]]
    assert diff_trees(small_tree, small_tree).unchanged


def test_merge_is_a_union_that_keeps_provenance_and_bumps_the_version(small_tree):
    other = KnowledgeTree("grown", "en", version=7)
    other.ensure_path(("Health", "Sleep", "Sleep apnea"), {"origin": "model", "model": "m1"})
    other.ensure_path(("Health", "Sleep", "insomnia"), {"origin": "model"})
    other.ensure_path(("Cooking", "Baking"), {"origin": "trending"})
    other.record_change("expand", "grew", added=4, time="2020-01-01T00:00:00+00:00")
    before = dumps_tree(small_tree)
    merged = merge_trees(small_tree, other)

    assert dumps_tree(small_tree) == before  # inputs untouched
    assert merged.version == 9 and merged.changelog[-1].operation == "merge"
    assert merged.changelog[-1].added == 3  # Sleep apnea, Cooking, Baking
    assert [e.operation for e in merged.changelog] == ["expand", "merge"]
    assert merged.find("Health > Sleep > Sleep apnea").provenance == {"origin": "model", "model": "m1"}
    assert merged.find("Health > Sleep > Insomnia").name == "Insomnia"  # the base's spelling wins
    assert set(small_tree.leaves()) < set(merged.leaves())
    assert diff_trees(small_tree, merged).removed == []
    # Merged trees survive a save and load.
    assert loads_tree(dumps_tree(merged)).leaves() == merged.leaves()


def test_merging_languages_marks_the_other_languages_nodes():
    en = KnowledgeTree("en", "en", domains=[TreeNode("Health", children=[TreeNode("Sleep")])])
    zh = KnowledgeTree("zh", "zh", domains=[TreeNode("健康", children=[TreeNode("睡眠")]), TreeNode("Health", children=[TreeNode("睡眠")])])
    merged = merge_trees(en, zh, name="both")
    assert merged.name == "both"
    assert merged.find("健康").language == "zh" and merged.find("健康 > 睡眠").language is None
    assert merged.find("Health > 睡眠").language == "zh" and merged.find("Health").language is None
    assert tree_stats(merged)["leaves_per_language"] == {"en": 1, "zh": 2}
