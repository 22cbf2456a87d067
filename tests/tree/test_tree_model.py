"""KnowledgeTree in memory: paths, ids, lookup, adding, languages and the changelog."""

from __future__ import annotations

import hashlib

import pytest

from condor.tree.model import (
    DuplicateNodeError,
    KnowledgeTree,
    TreeError,
    TreeNode,
    format_path,
    name_key,
    node_id,
    parse_path,
)


def test_walk_leaves_and_branches_in_stored_order(small_tree):
    paths = list(small_tree)
    assert paths[:4] == [("Health",), ("Health", "Sleep"), ("Health", "Sleep", "Insomnia"), ("Health", "Sleep", "Napping")]
    assert len(small_tree) == len(paths) == 16
    assert small_tree.leaves()[-2:] == [("Travel", "Visas"), ("Travel", "Packing")]
    assert len(small_tree.leaves()) == 9
    assert ("Health", "Sleep") in small_tree.branches()
    assert ("Travel", "Visas") not in small_tree.branches()


def test_find_ignores_case_and_spacing_and_takes_text_paths(small_tree):
    assert small_tree.find(("health", "SLEEP", "insomnia")).name == "Insomnia"
    assert small_tree.find("Health > Nutrition >  Meal   planning").name == "Meal planning"
    assert small_tree.find(("Health", "Dreams")) is None
    assert small_tree.find(()) is small_tree.root


def test_ids_are_stable_short_and_distinct(small_tree):
    ids = {node_id(path) for path in small_tree}
    assert len(ids) == len(small_tree)
    assert node_id(("Health", "Sleep")) == node_id(("health", "  SLEEP "))
    # Pinned: ids must not change between releases, or references saved elsewhere break.
    assert node_id(("Health",)) == hashlib.sha1(b"health").hexdigest()[:12]


def test_add_rejects_duplicate_sibling_and_missing_parent(small_tree):
    small_tree.add(("Travel",), TreeNode("Hostels"))
    assert small_tree.find("Travel > Hostels") is not None
    with pytest.raises(DuplicateNodeError):
        small_tree.add(("Travel",), TreeNode("  hostels".strip().upper()))
    with pytest.raises(TreeError, match="no node at 'Nowhere'"):
        small_tree.add(("Nowhere",), TreeNode("x"))
    assert issubclass(DuplicateNodeError, ValueError)


def test_ensure_path_creates_only_missing_parts(small_tree):
    node, created = small_tree.ensure_path(("Health", "Sleep", "Dreams", "Lucid dreaming"), {"origin": "user"})
    assert created == 2
    assert node.provenance == {"origin": "user"}
    assert small_tree.ensure_path(("Health", "Sleep"))[1] == 0


def test_language_is_inherited_down_the_path():
    tree = KnowledgeTree("mixed", "en", domains=[TreeNode("健康", language="zh", children=[TreeNode("睡眠")]), TreeNode("Law")])
    assert tree.language_of(("健康", "睡眠")) == "zh"
    assert tree.language_of(("Law",)) == "en"
    with pytest.raises(TreeError):
        tree.language_of(("Nope",))


def test_record_change_bumps_version_and_logs(small_tree):
    entry = small_tree.record_change("edit", "renamed things", added=1, removed=2, time="2025-01-01T00:00:00+00:00")
    assert small_tree.version == 4 == entry.version
    assert small_tree.changelog[-1].to_dict() == {
        "version": 4, "operation": "edit", "time": "2025-01-01T00:00:00+00:00",
        "summary": "renamed things", "added": 1, "removed": 2,
    }


def test_path_text_helpers():
    assert format_path(("A", "B")) == "A > B"
    assert parse_path("A > B > C") == ("A", "B", "C")
    assert parse_path("") == ()
    assert name_key("  Ｆｕｌｌ   Width ") == "full width"
