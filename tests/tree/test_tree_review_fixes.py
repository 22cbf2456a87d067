"""Regression tests for problems found in review: silent data loss, tracebacks, over-eager dedup,
slow reply parsing, reasoning leaking into answers, unchecked languages and non-strict schemas."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from condor.cli.main import app
from condor.tree.augment import choice_request
from condor.tree.dedup import NearDuplicateFilter, normalise
from condor.tree.expand import subtopics_schema
from condor.tree.io import load_tree, loads_tree
from condor.tree.model import KnowledgeTree, TreeError
from condor.tree.replies import ReplyError, parse_choice, parse_subtopics
from condor.tree.sample import sample_leaves


def _objects(schema):
    """Every object schema inside ``schema``."""
    if isinstance(schema, dict):
        if schema.get("type") == "object":
            yield schema
        for value in schema.values():
            yield from _objects(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _objects(value)


def test_schemas_are_valid_for_openai_strict_mode():
    # Strict json_schema mode requires additionalProperties: false on every object.
    schemas = [subtopics_schema(5), choice_request("Topic", ["A", "B"], "en", structured=True).json_schema]
    for schema in schemas:
        objects = list(_objects(schema))
        assert objects
        assert all(obj.get("additionalProperties") is False for obj in objects)


# 1. Tree files must not lose data silently.


HEAD = "format: condor-tree v1\nname: t\n"


def test_duplicate_tree_section_is_an_error_naming_the_line():
    text = HEAD + "tree:\n  Science: [Physics]\ntree:\n  Arts: [Music]\n"
    with pytest.raises(TreeError, match=r"f\.yaml, line 5: top-level field 'tree' appears twice"):
        loads_tree(text, source="f.yaml")


def test_duplicate_name_is_an_error():
    with pytest.raises(TreeError, match="'name' appears twice"):
        loads_tree(HEAD + "name: other\ntree:\n  Science: [Physics]\n", source="f.yaml")


def test_duplicate_top_level_key_in_json_is_an_error():
    text = '{"format": "condor-tree v1", "tree": {"Science": ["Physics"]}, "tree": {"Arts": ["Music"]}}'
    with pytest.raises(TreeError, match="f.json.*'tree' appears twice"):
        loads_tree(text, source="f.json", kind="json")


def test_node_object_with_numeric_name_is_a_node():
    tree = loads_tree(HEAD + "tree:\n  Science:\n    - name: 5\n      children: [a]\n", source="f.yaml")
    assert tree.find(("Science", "5", "a")) is not None
    assert tree.find(("Science", "name")) is None


def test_node_object_without_name_is_an_error():
    text = HEAD + "tree:\n  Science:\n    - description: about physics\n      children: [a]\n"
    with pytest.raises(TreeError, match=r"f\.yaml, line 5.*without a 'name'"):
        loads_tree(text, source="f.yaml")


def test_node_object_with_a_mapping_name_is_an_error():
    text = HEAD + "tree:\n  Science:\n    - name: {x: 1}\n"
    with pytest.raises(TreeError, match="'name' must be text"):
        loads_tree(text, source="f.yaml")


def test_node_object_with_a_non_node_key_is_an_error():
    text = HEAD + "tree:\n  Science:\n    - name: Physics\n      Optics: [Lenses]\n"
    with pytest.raises(TreeError, match="unknown node field"):
        loads_tree(text, source="f.yaml")


# 2. Bad input files give one-line errors naming the file, not tracebacks.


DEPTH = 3000


def cli(*args: str):
    return CliRunner().invoke(app, ["tree", *args], catch_exceptions=False)


def test_sample_inverse_to_non_utf8_file(tmp_path, small_tree_file):
    dataset = tmp_path / "data.jsonl"
    dataset.write_bytes(b'{"tag_path": "\xff\xfe"}\n')
    result = cli("sample", "-t", str(small_tree_file), "-n", "3", "--inverse-to", str(dataset))
    assert result.exit_code != 0
    assert "data.jsonl" in result.output and "UTF-8" in result.output


def test_expand_roots_non_utf8_file(tmp_path):
    roots = tmp_path / "roots.txt"
    roots.write_bytes(b"\xff\xfeScience\n")
    result = cli("expand", "--roots", str(roots), "--depth", "1", "-o", str(tmp_path / "out.yaml"))
    assert result.exit_code != 0
    assert "roots.txt" in result.output and "UTF-8" in result.output


def test_show_deep_json_tree(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"format": "condor-tree v1", "tree": ' + '{"a": ' * DEPTH + "[]" + "}" * DEPTH + "}")
    result = cli("show", "--tree", str(path))
    assert result.exit_code != 0
    assert "deep.json" in result.output and "levels deep" in result.output


def test_import_deep_json_tags(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"a": ' * DEPTH + "[]" + "}" * DEPTH)
    result = cli("import", str(path), "-o", str(tmp_path / "out.yaml"))
    assert result.exit_code != 0
    assert "deep.json" in result.output and "levels deep" in result.output


@pytest.mark.parametrize("style", ["flow", "block"])
def test_loads_tree_deep_yaml(tmp_path, style):
    if style == "flow":
        text = HEAD + "tree: " + "{a: " * DEPTH + "[]" + "}" * DEPTH + "\n"
    else:
        text = HEAD + "tree:\n" + "".join(" " * (i + 1) + "a:\n" for i in range(DEPTH))
    with pytest.raises(TreeError, match=r"deep\.yaml.*levels deep"):
        loads_tree(text, source="deep.yaml")


def test_moderately_deep_tree_still_loads(tmp_path):
    path = tmp_path / "ok.json"
    depth = 50
    path.write_text('{"format": "condor-tree v1", "tree": ' + '{"a": ' * depth + '["leaf"]' + "}" * depth + "}")
    tree = load_tree(path)
    assert tree.find(("a",) * depth + ("leaf",)) is not None


# 3. Dedup keeps symbols and numbers that make names different.


@pytest.mark.parametrize(
    "kept, new",
    [("C", "C++"), ("C", "C#"), ("NET", ".NET"), ("Vitamin B1", "Vitamin B12"), ("Python 2", "Python 3"),
     ("Windows 10", "Windows 11"), ("R and D", "R&D")],
)
def test_symbol_and_digit_differences_are_not_duplicates(kept, new):
    assert NearDuplicateFilter(names=[kept]).check(new) is None


def test_symbols_survive_normalisation_but_spelling_variants_still_merge():
    assert normalise("C++") == "c++" and normalise("C#") == "c#" and normalise(".NET") == ".net"
    assert NearDuplicateFilter(names=["Sleep Hygiene"]).check("Sleep Hygiene.") == "Sleep Hygiene"
    assert NearDuplicateFilter(names=["C++"]).check("c ++") == "C++"
    assert NearDuplicateFilter(names=["Vitamin B12"]).check("Vitamin-B12") == "Vitamin B12"


# 4. Long runs of spaces in a reply are read in linear time.


SPACES = " " * 50_000


@pytest.mark.parametrize(
    "reply",
    ["Sleep" + SPACES + "Insomnia", "1. Sleep" + SPACES + "x\n2. Insomnia", "- Sleep" + SPACES + "-",
     "[Sleep" + SPACES + "]", "Sleep" + SPACES + "\nInsomnia" + SPACES + "\n"],
)
def test_runs_of_spaces_are_parsed_quickly(reply):
    start = time.perf_counter()
    try:
        parse_subtopics(reply)
    except ReplyError:
        pass
    assert time.perf_counter() - start < 1.0


def test_spacing_around_separators_is_still_trimmed():
    assert parse_subtopics("Sleep ,  Insomnia ; Naps") == ["Sleep", "Insomnia", "Naps"]
    assert parse_subtopics("[Sleep ,  Insomnia]") == ["Sleep", "Insomnia"]
    assert parse_subtopics("1. Sleep   : how to rest\n2. Naps  -  short rests") == ["Sleep", "Naps"]


# 5. Reasoning blocks are not read as the answer; list debris is not a tag.


def test_leading_reasoning_is_stripped_before_the_choice():
    assert parse_choice("<think>Options 1 and 4 are close</think>\n4", 5) == 4
    assert parse_subtopics("<think>\n1. maybe this\n2. or that\n</think>\n- Sleep\n- Naps") == ["Sleep", "Naps"]


def test_only_a_leading_reasoning_block_is_stripped():
    assert parse_subtopics("- <think>Tank</think>\n- Naps") == ["<think>Tank</think>", "Naps"]


def test_reasoning_without_an_answer_is_an_error():
    with pytest.raises(ReplyError) as info:
        parse_choice("<think>Options 1 and 4 are close", 5)
    assert info.value.reason == "unfinished_reasoning"
    with pytest.raises(ReplyError):
        parse_subtopics("<think>1. Sleep</think>   ")


def test_json_list_followed_by_commentary():
    reply = '["Sleep Hygiene", "Insomnia"] These cover the main areas: [core]'
    assert parse_subtopics(reply) == ["Sleep Hygiene", "Insomnia"]
    reply = "['Sleep Hygiene', 'Insomnia'] These cover the main areas: [core]"
    assert parse_subtopics(reply) == ["Sleep Hygiene", "Insomnia"]


def test_unquoted_list_fragments_with_quotes_or_brackets_are_rejected():
    assert parse_subtopics('[Sleep, "Insomnia] These cover: [core]') == ["Sleep"]


# 6. Languages are checked on load, not discovered to be wrong when sampling.


@pytest.mark.parametrize("language", ["english", "5", "[en]", "e", "en_US", "''"])
def test_bad_tree_language_is_an_error_naming_the_file_and_line(language):
    text = f"format: condor-tree v1\nlanguage: {language}\ntree:\n  Science: [Physics]\n"
    with pytest.raises(TreeError, match=r"f\.yaml, line 2: language must be a short language code"):
        loads_tree(text, source="f.yaml")


def test_bad_node_language_is_an_error():
    text = HEAD + "tree:\n  Science:\n    - name: Physics\n      language: english\n"
    with pytest.raises(TreeError, match=r"f\.yaml, line 5 \(under Science > Physics\): language must be"):
        loads_tree(text, source="f.yaml")


@pytest.mark.parametrize("language, code", [("en", "en"), ("zh", "zh"), ("zh-hant", "zh-hant"), ("zh-Hant", "zh-hant"), ("no", "no"), ("pt-BR", "pt-br")])
def test_good_languages_load(language, code):
    warnings: list[str] = []
    text = f"format: condor-tree v1\nlanguage: {language}\ntree:\n  Science: [Physics]\n"
    assert loads_tree(text, source="f.yaml", warnings=warnings).language == code
    assert bool(warnings) is (language != code)


def test_trees_built_in_code_and_sample_filters_check_the_language():
    with pytest.raises(TreeError, match="language must be"):
        KnowledgeTree("t", "english")
    tree = loads_tree(HEAD + "tree:\n  Science: [Physics]\n", source="f.yaml")
    with pytest.raises(TreeError, match="language must be"):
        sample_leaves(tree, 1, language="english")
    assert sample_leaves(tree, 1, language="EN") == [("Science", "Physics")]
