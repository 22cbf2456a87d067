"""Tree files: round trips through YAML and JSON, the format line, and errors that say where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from condor.tree.io import FORMAT, dumps_tree, load_tree, loads_tree, resolve_tree, save_tree
from condor.tree.model import TreeError, TreeNode


def tree_text(body: str, header: str = f"format: {FORMAT}\nname: t\nlanguage: en\n") -> str:
    return header + "tree:\n" + body


def shape(tree):
    return [(path, node.description, node.language, node.provenance) for path, node in tree.walk()]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_keeps_everything(small_tree, tmp_path, suffix):
    small_tree.add(("Travel",), TreeNode("Hostels", description="Cheap beds", provenance={"origin": "model", "model": "m", "added": "2025-01-02T03:04:05+00:00"}))
    small_tree.add(("Travel",), TreeNode("签证", language="zh"))
    small_tree.find("Health").description = "Body and mind"
    small_tree.record_change("edit", "added hostels", added=2)
    path = tmp_path / f"tree{suffix}"
    save_tree(small_tree, path)
    if suffix == ".json":
        assert json.loads(path.read_text(encoding="utf-8"))["format"] == FORMAT
    again = load_tree(path)
    assert shape(again) == shape(small_tree)
    assert (again.name, again.language, again.version, again.description) == ("small", "en", 4, "A hand-written tree for tests.")
    assert [e.to_dict() for e in again.changelog] == [e.to_dict() for e in small_tree.changelog]
    # Saving what was loaded gives the same bytes: the format is stable.
    assert dumps_tree(again, suffix[1:]) == path.read_text(encoding="utf-8")


def test_plain_trees_stay_in_the_compact_shipped_layout(small_tree):
    text = dumps_tree(small_tree)
    assert "  Health:\n    Sleep:\n    - Insomnia\n" in text
    assert "name: Insomnia" not in text


def test_names_keep_their_written_text():
    tree = loads_tree(tree_text("  Music:\n    - yes\n    - 1984\n    - 0.10\n    - 2024-01-01\n"))
    assert [p[-1] for p in tree.leaves()] == ["yes", "1984", "0.10", "2024-01-01"]


def test_missing_and_unknown_format_lines(tmp_path):
    missing = tmp_path / "nofmt.yaml"
    missing.write_text("name: x\ntree:\n  A: [b]\n", encoding="utf-8")
    with pytest.raises(TreeError, match=r"nofmt\.yaml: missing 'format: condor-tree v1'"):
        load_tree(missing)
    layout = tmp_path / "tags.json"
    layout.write_text('{"Health": {"Sleep": ["Insomnia"]}}', encoding="utf-8")
    with pytest.raises(TreeError, match="condor tree import"):
        load_tree(layout)
    future = tmp_path / "future.yaml"
    future.write_text("format: condor-tree v9\ntree:\n  A: [b]\n", encoding="utf-8")
    with pytest.raises(TreeError, match=r"future\.yaml: unknown format 'condor-tree v9'"):
        load_tree(future)


def test_yaml_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(tree_text("  Health:\n    - Sleep\n   - Diet: [\n"), encoding="utf-8")
    with pytest.raises(TreeError, match=r"broken\.yaml, line \d+, column \d+: not valid YAML") as info:
        load_tree(path)
    assert isinstance(info.value, ValueError)


def test_json_syntax_error_names_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"format": "condor-tree v1",\n "tree": {"A": ["b",]}}', encoding="utf-8")
    with pytest.raises(TreeError, match=r"broken\.json, line 2, column \d+: not valid JSON"):
        load_tree(path)


def test_empty_name_is_rejected_with_line_and_path(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text(tree_text('  Health:\n    Sleep:\n      - Insomnia\n      - "  "\n'), encoding="utf-8")
    with pytest.raises(TreeError, match=r"empty\.yaml, line 8 \(under Health > Sleep\): empty tag name"):
        load_tree(path)


def test_null_list_item_is_rejected(tmp_path):
    with pytest.raises(TreeError, match=r"line 7 \(under Health\): empty list item"):
        loads_tree(tree_text("  Health:\n    - Sleep\n    -\n"), source="t.yaml")


def test_over_long_name_is_rejected_with_advice():
    long_name = "word " * 40
    with pytest.raises(TreeError, match=r"line 6 \(under Health\): tag name of 199 characters is too long.*description"):
        loads_tree(tree_text(f"  Health:\n    - {long_name}\n"), source="t.yaml")


def test_duplicate_siblings_are_merged_with_a_warning():
    warnings: list[str] = []
    tree = loads_tree(
        tree_text("  Health:\n    Sleep: [Insomnia]\n    sleep: [Napping, insomnia]\n  Law: [Contracts, contracts]\n"),
        source="dup.yaml",
        warnings=warnings,
    )
    assert tree.find("Health").children[0].name == "Sleep"
    assert [c.name for c in tree.find("Health > Sleep").children] == ["Insomnia", "Napping"]
    assert [c.name for c in tree.find("Law").children] == ["Contracts"]
    assert any("dup.yaml, line 7 (under Health): duplicate sibling 'sleep' merged into 'Sleep'" in w for w in warnings)
    assert any("(under Law): duplicate sibling 'contracts'" in w for w in warnings)
    assert len(warnings) == 3


def test_duplicate_keys_in_json_are_merged_not_lost():
    text = json.dumps({"format": FORMAT, "tree": {}})[:-3] + '{"A": ["x"], "A": ["y"]}}'
    warnings: list[str] = []
    tree = loads_tree(text, source="d.json", kind="json", warnings=warnings)
    assert tree.leaves() == [("A", "x"), ("A", "y")]
    assert "d.json (top level): duplicate sibling 'A'" in warnings[0]


def test_spacing_is_normalised_with_a_warning():
    warnings: list[str] = []
    tree = loads_tree(tree_text('  Health:\n    - "Meal    planning"\n'), source="s.yaml", warnings=warnings)
    assert tree.leaves() == [("Health", "Meal planning")]
    assert warnings == ["s.yaml, line 6 (under Health): normalised spacing in 'Meal    planning' to 'Meal planning'"]


@pytest.mark.parametrize(
    "body, message",
    [
        ("  Health:\n    - [a, b]\n", "a list inside a list"),
        ("  Health:\n    - {name: X, colour: red}\n", r"unknown node field\(s\) \['colour'\]"),
        ("  Health:\n    - {name: X, provenance: [1]}\n", "provenance must be a mapping"),
        ("  Health:\n    - true\n", "true is not a tag name"),
    ],
)
def test_malformed_nodes_name_the_place(body, message):
    with pytest.raises(TreeError, match=r"t\.yaml, line \d+ \(under Health.*" + message):
        loads_tree(tree_text(body), source="t.yaml")


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "must be a mapping"),
        (f"format: {FORMAT}\nname: x\n", "no 'tree' field"),
        (f"format: {FORMAT}\ntree: {{}}\n", "the tree has no domains"),
        (f"format: {FORMAT}\nversion: zero\ntree:\n  A: [b]\n", "version must be a whole number"),
        (f"format: {FORMAT}\nowner: me\ntree:\n  A: [b]\n", r"unknown top-level field\(s\) \['owner'\]"),
        (f"format: {FORMAT}\nchangelog: [{{operation: paint}}]\ntree:\n  A: [b]\n", "changelog entry 1: operation must be one of"),
    ],
)
def test_malformed_documents(text, message):
    with pytest.raises(TreeError, match=r"^t\.yaml.*" + message):
        loads_tree(text, source="t.yaml")


def test_unreadable_file_errors(tmp_path):
    with pytest.raises(TreeError, match="no such tree file"):
        load_tree(tmp_path / "absent.yaml")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(TreeError, match=r"binary\.yaml, line 1, column 1: not UTF-8 text"):
        load_tree(binary)


def test_resolve_names_shipped_trees_or_paths(small_tree_file):
    assert resolve_tree(str(small_tree_file)).name == "small"
    for name in ("en", "zh"):
        shipped = resolve_tree(name)
        assert shipped.language == name
    with pytest.raises(TreeError, match="no such tree file"):
        resolve_tree("fr")


def test_save_creates_parent_directories(small_tree, tmp_path):
    target: Path = tmp_path / "a" / "b" / "tree.yaml"
    save_tree(small_tree, target)
    assert load_tree(target).leaves() == small_tree.leaves()
