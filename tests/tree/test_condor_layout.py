"""Condor's published tag layout: import, export, and a round trip that keeps every tag."""

from __future__ import annotations

import json

import pytest

from condor.tree.condor_layout import dumps_condor_tags, export_condor_tags, import_condor_tags, loads_condor_tags
from condor.tree.io import load_tree, save_tree
from condor.tree.model import TreeError

ENGLISH_TAGS = {
    "Marriage and Relationships": {
        "Dating and Friendship": ["Dating Apps", "First Dates", "Making Friends as an Adult"],
        "Married Life": ["Sharing Chores", "Money Talks", "Marriage Law"],
        "Weddings": ["Wedding Budgets", "Choosing a Venue", "Wedding Photography"],
    },
    "Travel": {
        "Planning": ["Itineraries", "Travel Insurance", "Visa Applications"],
        "On the Road": ["Packing Light", "Jet Lag", "Travel Safety"],
        "Budget Travel": ["Hostels", "Rail Passes", "Cheap Flights"],
    },
    "Food and Cooking": {
        "Home Cooking": ["Knife Skills", "Weeknight Dinners", "Meal Prep"],
        "Baking": ["Sourdough", "Cakes", "Gluten-Free Baking"],
        "Eating Out": ["Street Food", "Tipping", "Restaurant Reviews"],
    },
    "Personal Finance": {
        "Saving": ["Emergency Funds", "Budgeting Apps"],
        "Investing": ["Index Funds", "Retirement Accounts", "Bonds"],
        "Debt": ["Credit Cards", "Student Loans", "Mortgages"],
    },
}

CHINESE_TAGS = {
    "婚恋情感": {
        "恋爱交友": ["相亲技巧", "第一次约会", "网络交友"],
        "婚姻经营": ["夫妻沟通", "婆媳关系", "婚姻法"],
    },
    "旅游出行": {
        "行程规划": ["自由行攻略", "签证办理", "旅行保险"],
        "省钱旅行": ["特价机票", "青旅住宿", "淡季出游"],
    },
    "美食分享": {
        "家常菜": ["川菜做法", "快手早餐", "煲汤技巧"],
        "探店": ["街头小吃", "餐厅点评"],
    },
}

DEEP_TAGS = {
    "Science": {
        "Physics": {"Mechanics": ["Newton's Laws", "Friction"], "Optics": ["Lenses", "Lasers"]},
        "Chemistry": ["Acids and Bases", {"Organic Chemistry": ["Alkanes", "Polymers"]}],
        "Biology": "Cell Biology",
        "Earth Science": [],
    },
    "Hobbies": [
        "Knitting",
        {"Photography": ["Lighting", "Composition"], "Gardening": {"Indoor": ["Succulents"], "Outdoor": None}},
    ],
    "Misc": None,
}


def leaf_paths(layout, prefix=()):
    """Every tag path in a layout value, read independently of the importer."""
    if layout is None or layout == [] or layout == {}:
        return {prefix} if prefix else set()
    if isinstance(layout, str):
        return {prefix + (layout,)}
    if isinstance(layout, dict):
        return set().union(*(leaf_paths(value, prefix + (key,)) for key, value in layout.items()))
    return set().union(*(leaf_paths(item, prefix) for item in layout))


@pytest.mark.parametrize("tags, language", [(ENGLISH_TAGS, "en"), (CHINESE_TAGS, "zh"), (DEEP_TAGS, "en")])
def test_import_export_round_trip_keeps_every_tag(tmp_path, tags, language):
    source = tmp_path / "tags.json"
    source.write_text(json.dumps(tags, ensure_ascii=False, indent=4), encoding="utf-8")
    tree = import_condor_tags(source, language=language)
    assert set(tree.leaves()) == leaf_paths(tags)
    # Through our own file format and back out to Condor's layout.
    save_tree(tree, tmp_path / "tree.yaml")
    export_condor_tags(load_tree(tmp_path / "tree.yaml"), tmp_path / "out.json")
    exported = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert leaf_paths(exported) == leaf_paths(tags)
    assert list(exported) == list(tags)


def test_two_level_layout_comes_back_identical(tmp_path):
    for tags in (ENGLISH_TAGS, CHINESE_TAGS):
        tree = loads_condor_tags(json.dumps(tags, ensure_ascii=False), source="tags.json")
        assert json.loads(dumps_condor_tags(tree)) == tags
        assert "\\u" not in dumps_condor_tags(tree)


def test_import_records_version_and_changelog(tmp_path):
    source = tmp_path / "condor_tags.json"
    source.write_text(json.dumps(ENGLISH_TAGS), encoding="utf-8")
    tree = import_condor_tags(source)
    assert tree.name == "condor_tags"
    assert tree.version == 1
    assert tree.changelog[0].operation == "import"
    assert tree.changelog[0].added == len(tree)


def test_import_problems_are_reported():
    warnings: list[str] = []
    tree = loads_condor_tags('{"Travel": {"Planning": ["Visas", "visas", " Hostels "]}}', source="t.json", warnings=warnings)
    assert tree.leaves() == [("Travel", "Planning", "Visas"), ("Travel", "Planning", "Hostels")]
    assert warnings == ["t.json (under Travel > Planning): duplicate sibling 'visas' merged into 'Visas'"]
    with pytest.raises(TreeError, match="expected a JSON object"):
        loads_condor_tags('["Travel"]', source="t.json")
    with pytest.raises(TreeError, match=r"t\.json \(under Travel\): empty tag name"):
        loads_condor_tags('{"Travel": [""]}', source="t.json")
    with pytest.raises(TreeError, match="already a condor tree file"):
        loads_condor_tags('{"format": "condor-tree v1", "tree": {"A": []}}', source="t.json")
    with pytest.raises(TreeError, match="no tags found"):
        loads_condor_tags("{}", source="t.json")
