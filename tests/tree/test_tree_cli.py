"""``condor tree ...`` through the real entry point, in a temporary directory."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from condor.cli.main import app
from condor.tree.io import load_tree

TAGS = {
    "Travel": {"Planning": ["Visas", "Itineraries"], "Budget": ["Hostels", "Rail passes"]},
    "旅游出行": {"行程规划": ["签证办理", "自由行攻略"]},
    "Science": {"Physics": {"Optics": ["Lasers"]}, "Biology": []},
}


def run(*args: str, expect: int = 0):
    result = CliRunner().invoke(app, ["tree", *args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def backend_args(server) -> list[str]:
    return ["--base-url", server.base_url, "--model", "fake-model"]


def test_help_lists_every_command():
    out = run("--help").output
    for command in ("show", "stats", "import", "export", "expand", "augment", "diff", "merge", "sample"):
        assert command in out


def test_show_and_stats(small_tree_file):
    out = run("show", "--tree", str(small_tree_file), "--depth", "1").output
    assert out.splitlines()[1:] == ["  Health  [+4 leaves]", "  Programming  [+3 leaves]", "  Travel  [+2 leaves]"]
    stats = json.loads(run("stats", "--tree", str(small_tree_file), "--json").output)
    assert stats["leaves"] == 9 and stats["domains"] == 3
    assert "leaves per domain: min 2, median 3, max 4" in run("stats", "-t", str(small_tree_file)).output


@pytest.mark.parametrize("name", ["en", "zh"])
def test_shipped_tree_stats_meet_the_acceptance_numbers(name):
    stats = json.loads(run("stats", "--tree", name, "--json").output)
    assert stats["domains"] >= 60 and stats["leaves"] >= 1500 and stats["leaves_per_domain"]["min"] >= 12


def test_import_then_export_gives_back_the_tags(tmp_path):
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps(TAGS, ensure_ascii=False), encoding="utf-8")
    assert "imported 8 leaves in 3 domains" in run("import", str(tags), "-o", str(tmp_path / "tree.yaml")).output
    run("export", str(tmp_path / "tree.yaml"), "--format", "condor", "-o", str(tmp_path / "out.json"))
    assert json.loads((tmp_path / "out.json").read_text(encoding="utf-8")) == TAGS
    run("export", str(tmp_path / "tree.yaml"), "--format", "json", "-o", str(tmp_path / "tree.json"))
    assert load_tree(tmp_path / "tree.json").leaves() == load_tree(tmp_path / "tree.yaml").leaves()
    bad = run("export", "en", "--format", "xml", "-o", str(tmp_path / "x"), expect=2)
    assert "unknown format 'xml'" in bad.output


def test_errors_are_one_line_with_the_place(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("format: condor-tree v1\ntree:\n  Health:\n    - ''\n", encoding="utf-8")
    result = run("show", "--tree", str(broken), expect=2)
    assert re.search(r"error: .*broken\.yaml, line 4 \(under Health\): empty tag name", result.output)
    assert "Traceback" not in result.output
    assert "no such tree file" in run("stats", "--tree", str(tmp_path / "missing.yaml"), expect=2).output
    assert "exactly one of --roots" in run("expand", "-o", str(tmp_path / "o.yaml"), expect=2).output


def test_load_warnings_are_printed(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("format: condor-tree v1\ntree:\n  Health: [Sleep, sleep]\n", encoding="utf-8")
    result = run("show", "--tree", str(dup))
    assert "warning: " in result.output and "duplicate sibling 'sleep'" in result.output


def test_expand_from_roots_with_the_fake_server(tmp_path, fake_server):
    roots = tmp_path / "roots.txt"
    roots.write_text("Gardening\nAstronomy\n", encoding="utf-8")
    answers = {"Gardening": '{"subtopics": ["Composting", "Pruning"]}', "Astronomy": "not json and no list {"}
    fake_server.responder = lambda body: answers[re.search(r"Topic path: (.+)", body["messages"][-1]["content"]).group(1)]
    out = tmp_path / "grown.yaml"
    problems = tmp_path / "problems.jsonl"
    result = run("expand", "--roots", str(roots), "--depth", "1", "--breadth", "2", "-o", str(out), "--problems", str(problems), *backend_args(fake_server))
    assert "added 2 tags" in result.output and "1 problems" in result.output
    assert "problem: Astronomy: no_subtopics" in result.output
    assert json.loads(problems.read_text(encoding="utf-8"))["path"] == ["Astronomy"]
    assert "no node at 'Nope'" in run("expand", "--roots", str(roots), "--under", "Nope", "-o", str(out), expect=2).output
    grown = load_tree(out)
    assert grown.leaves() == [("Gardening", "Composting"), ("Gardening", "Pruning"), ("Astronomy",)]
    assert grown.find("Gardening > Pruning").provenance["origin"] == "model"
    assert [e.operation for e in grown.changelog] == ["create", "expand"]


def test_augment_writes_the_tree_and_the_review_list(tmp_path, fake_server, small_tree_file):
    topics = tmp_path / "topics.txt"
    topics.write_text("Sleep trackers\nCelebrity gossip\n", encoding="utf-8")

    def responder(body):
        text = body["messages"][-1]["content"]
        if "Celebrity" in text:
            return '{"choice": 0}'
        return '{"choice": 1}'

    fake_server.responder = responder
    out, review = tmp_path / "aug.yaml", tmp_path / "review.jsonl"
    result = run("augment", "--topics", str(topics), "--tree", str(small_tree_file), "-o", str(out), "--review", str(review), "--no-embeddings", *backend_args(fake_server))
    assert "placed 1 topics, 1 for review" in result.output
    assert load_tree(out).find("Health > Sleep > Sleep trackers") is not None
    assert [json.loads(line)["topic"] for line in review.read_text(encoding="utf-8").splitlines()] == ["Celebrity gossip"]


def test_diff_merge_and_sample(tmp_path, small_tree_file):
    other = tmp_path / "other.yaml"
    other.write_text("format: condor-tree v1\nname: other\nversion: 5\ntree:\n  Health:\n    Sleep: [Insomnia, Dreams]\n  Cooking: [Baking]\n", encoding="utf-8")
    diff = json.loads(run("diff", str(small_tree_file), str(other), "--json").output)
    assert ["Health", "Sleep", "Dreams"] in diff["added"] and ["Travel", "Visas"] in diff["removed"]
    assert "+ Cooking > Baking" in run("diff", str(small_tree_file), str(other)).output
    merged = tmp_path / "merged.yaml"
    assert "(version 6)" in run("merge", str(small_tree_file), str(other), "-o", str(merged)).output
    assert len(load_tree(merged).leaves()) == 11

    first = run("sample", "--tree", str(small_tree_file), "-n", "5", "--seed", "3").output.splitlines()
    assert first == run("sample", "--tree", str(small_tree_file), "-n", "5", "--seed", "3").output.splitlines()
    assert len(set(first)) == 5 and all(" > " in line for line in first)
    only_travel = run("sample", "-t", str(small_tree_file), "-n", "2", "--weights", "Health=0,Programming=0", "--json").output
    assert sorted(json.loads(line)[0] for line in only_travel.splitlines()) == ["Travel", "Travel"]
    dataset = tmp_path / "data.jsonl"
    dataset.write_text("".join(json.dumps({"tag_path": ["Travel", "Visas"]}) + "\n" for _ in range(50)), encoding="utf-8")
    draws = run("sample", "-t", str(small_tree_file), "-n", "8", "--inverse-to", str(dataset)).output.splitlines()
    assert "Travel > Visas" not in draws[:4]
    assert "name no domain" in run("sample", "-t", str(small_tree_file), "-n", "1", "--weights", "Cats=1", expect=2).output
