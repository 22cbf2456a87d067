"""Hostile files through the real CLI: alias bombs, oversized and deep documents, YAML's booleans,
bytes that are not UTF-8, invisible characters in tag names, and very large tag files.

Each document is refused in one line that names the file, quickly and in little memory (the command's
own peak RSS is measured), or read as the user meant it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_process import condor
from typer.testing import CliRunner

from condor.cli.main import app

# The documented limits (docs/reliability.md; condor.documents), written out so that a change is seen.
CONFIG_BYTES = 16 * 1024 * 1024
TREE_BYTES = 128 * 1024 * 1024

#: What a refused hostile document may cost the command at most (the interpreter and its imports
#: alone are about 60-90 MB).
MEMORY_MB = 250
SECONDS = 30


def alias_bomb(levels: int, top: str) -> str:
    """``levels`` of nine aliases each: a few hundred bytes that stand for 9**levels nodes."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n" + top.replace("BOMB", f"*l{levels - 1}") + "\n"


def one_line_error(result, path: Path, *words: str) -> None:
    assert result.code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0], result.stderr
    assert all(word in errors[0] for word in words), errors[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("levels", [6, 9])
def test_alias_bomb_tree_is_refused_fast_in_little_memory(tmp_path, levels):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("format: condor-tree v1\nname: bomb\n" + alias_bomb(levels, "tree: {d: {t: BOMB}}"))
    assert bomb.stat().st_size < 600  # the 583 bytes: 5.4 million leaves, 49 s, 2.4 GB
    result = condor("tree", "stats", "--tree", bomb)
    one_line_error(result, bomb, "aliases", "100,000")
    assert result.seconds < SECONDS and result.peak_mb < MEMORY_MB, (result.seconds, result.peak_mb)
    # The same file as the tree of a run is refused the same way, before any model is touched.
    run = condor("run", "-o", tmp_path / "out", "--tree", bomb, "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
    one_line_error(run, bomb, "aliases")


@pytest.mark.parametrize("kind", ["config", "task_file", "few_shot_file"])
def test_alias_bombs_in_settings_files_are_refused(tmp_path, kind):
    bomb = tmp_path / f"{kind}.yaml"
    if kind == "config":
        bomb.write_text(alias_bomb(9, "llm: {model: BOMB}"))
        config = bomb
    else:
        top = "tasks: BOMB" if kind == "task_file" else "Health: BOMB"
        bomb.write_text(alias_bomb(9, top))
        config = tmp_path / "run.yaml"
        config.write_text(f"pipeline:\n  {kind}: {bomb}\n")
    result = condor("run", "-o", tmp_path / "out", "-c", config)
    one_line_error(result, bomb, "aliases")
    assert result.seconds < SECONDS and result.peak_mb < MEMORY_MB, (result.seconds, result.peak_mb)


def test_a_node_that_contains_itself_is_refused(tmp_path):
    loop = tmp_path / "loop.yaml"
    loop.write_text("format: condor-tree v1\ntree: &t {d: *t}\n")
    one_line_error(condor("tree", "show", "--tree", loop), loop, "contains it")


def test_anchors_used_as_meant_still_work(tmp_path, fake_server):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"llm: &server {{backend: openai, base_url: '{fake_server.base_url}', model: fake-model}}\n"
        "roles: {critic: *server, refiner: *server}\n"
    )
    result = CliRunner().invoke(app, ["generate", str(write_prompts(tmp_path, 2)), "-o", str(tmp_path / "o"),
                                      "-c", str(config), "--quiet"])
    assert result.exit_code == 0, result.output


def write_prompts(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n" for i in range(n)))
    return path


def test_oversized_files_are_refused_before_they_are_read(tmp_path):
    config = tmp_path / "big.yaml"
    with config.open("wb") as handle:  # sparse: no disk is used, but the size is what it says
        handle.truncate(CONFIG_BYTES + 1)
    one_line_error(condor("run", "-o", tmp_path / "out", "-c", config), config, "16 MB")
    tree = tmp_path / "big-tree.yaml"
    with tree.open("wb") as handle:
        handle.truncate(TREE_BYTES + 1)
    result = condor("tree", "stats", "--tree", tree)
    one_line_error(result, tree, "128 MB")
    assert result.peak_mb < MEMORY_MB


def test_deep_nesting_in_a_config_is_refused(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("llm: " + "[" * 5000 + "]" * 5000 + "\n")
    one_line_error(condor("run", "-o", tmp_path / "out", "-c", deep), deep, "levels deep")


def test_yaml_booleans_mean_the_documented_words(tmp_path, fake_server):
    config = tmp_path / "run.yaml"
    config.write_text(f"llm: {{base_url: '{fake_server.base_url}', model: fake-model, structured: off}}\n"
                      "pipeline: {relevance: off}\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["generate", str(write_prompts(tmp_path, 1)), "-o", str(out), "-c", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["generate"]["settings"]["structured"] == "off"
    config.write_text(f"llm: {{base_url: '{fake_server.base_url}', model: fake-model, structured: on}}\n")
    result = CliRunner().invoke(app, ["run", "-o", str(tmp_path / "run"), "-c", str(config), "--leaves", "1",
                                      "--tasks", "view", "--quiet"])
    assert result.exit_code in (0, 1), result.output  # read as "on": the run starts (its outcome is not the point)
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["config"]["llm"]["structured"] == "on"


@pytest.mark.parametrize("setting", ["llm: {max_tokens: true}", "llm: {concurrency: yes}", "pipeline: {leaves: on}"])
def test_a_boolean_where_a_number_is_meant_is_an_error(tmp_path, fake_server, setting):
    config = tmp_path / "run.yaml"
    config.write_text(setting + "\n")
    result = CliRunner().invoke(app, ["run", "-o", str(tmp_path / "out"), "-c", str(config),
                                      "--base-url", fake_server.base_url, "--model", "fake-model"])
    assert result.exit_code == 2 and "expected a number" in result.output and "boolean" in result.output, result.output
    assert fake_server.request_count == 0


def test_bytes_that_are_not_utf8_are_reported_with_their_line(tmp_path, fake_server):
    config = tmp_path / "run.yaml"
    config.write_bytes(b"llm:\n  model: caf\xe9\n")
    result = CliRunner().invoke(app, ["run", "-o", str(tmp_path / "out"), "-c", str(config)])
    assert result.exit_code == 2 and "line 2, column 13: not UTF-8" in result.output, result.output
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b'{"id": 1, "prompt": "fine"}\n{"id": 2, "prompt": "caf\xe9"}\n{"id": 3, "prompt": "also fine"}\n')
    out = tmp_path / "gen"
    result = CliRunner().invoke(app, ["generate", str(prompts), "-o", str(out), "--base-url", fake_server.base_url,
                                      "--model", "fake-model", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in (out / "output.jsonl").read_text().splitlines()]
    assert [row.get("output") for row in rows] == ["Echo: fine", None, "Echo: also fine"]
    assert rows[1]["error"].startswith("invalid input: line 2: not UTF-8 text (byte 0xe9")
    # An invalid line is not a failed call: no --retry-failed hint for it.
    assert "--retry-failed" not in result.output and "1 invalid input lines" in result.output


def test_control_and_bidi_characters_leave_tag_names(tmp_path):
    tree = tmp_path / "t.yaml"
    tree.write_text(json.dumps({"format": "condor-tree v1", "tree": {"Health": ["Sle\u202eep", "Diet\x00s", "Fine"]}}))
    result = condor("tree", "show", "--tree", tree)
    assert result.code == 0, result.output
    assert "\u202e" not in result.stdout and "\x00" not in result.stdout
    assert "Sleep" in result.stdout and "Diets" in result.stdout
    assert result.stderr.count("normalised control or bidirectional characters") == 2


def test_tree_import_help_shows_the_layout(tmp_path):
    result = CliRunner().invoke(app, ["tree", "import", "--help"], env={"COLUMNS": "200"})
    assert "{domain: {topic: [leaf, ...]}}" in result.output


def test_a_tree_with_fewer_leaves_than_asked_is_warned_about_before_the_run(tmp_path, fake_server):
    tree = tmp_path / "one.yaml"
    tree.write_text("format: condor-tree v1\ntree: {Cooking: [Bread]}\n")
    config = tmp_path / "run.yaml"
    config.write_text("pipeline: {relevance: off}\n")
    result = condor("run", "-o", tmp_path / "out", "-c", config, "--tree", tree, "--leaves", "10", "--tasks", "view",
                    "--base-url", fake_server.base_url, "--model", "fake-model", "--quiet", "--rounds", "0", merge=True)
    warning = next(line for line in result.stdout.splitlines() if "fewer than the 10 asked for" in line)
    assert "has 1 leaf in 'en'" in warning and "near-duplicate" in warning
    # Up front: before the first request's results, not in the summary at the end.
    assert result.stdout.index("fewer than the 10") < result.stdout.index("dataset:")


@pytest.mark.timeout(300)
def test_a_large_tag_file_imports_in_linear_time(tmp_path):
    # 60,000 leaves under one topic: comparing each new leaf with all its siblings took quadratic time
    # (hours here); a key index makes it a few seconds.
    tags = tmp_path / "tags.json"
    tags.write_text(json.dumps({"Domain": {"Topic": [f"leaf {i}" for i in range(60_000)]}}))
    result = condor("tree", "import", tags, "-o", tmp_path / "tree.yaml", timeout=240)
    assert result.code == 0 and "imported 60000 leaves" in result.stdout, result.output


def test_a_refine_input_line_that_is_not_utf8_is_rejected_with_its_number(tmp_path, fake_server):
    from condor_responder import respond

    fake_server.responder = respond
    data = tmp_path / "data.jsonl"
    good = json.dumps({"question": "What is a prime number?", "answer": "A number with exactly two divisors."})
    data.write_bytes(good.encode() + b'\n{"question": "caf\xe9?", "answer": "yes"}\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["refine", "-o", str(out), "--input", str(data), "--base-url", fake_server.base_url,
                                      "--model", "fake-model", "--quiet"])
    assert result.exit_code == 0, result.output
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["detail"] for r in rejected] == ["line 2: not UTF-8 text (byte 0xe9 at column 18)"]
    assert len((out / "sft.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("flag, value, said", [
    ("--concurrency", "-5", "Invalid value for '--concurrency'"),
    ("--temperature", "9", "Invalid value for '--temperature'"),
    ("--base-url", "ftp://example.org/v1", "--base-url (llm.base_url): Value error, base_url must start with http"),
])
def test_a_bad_flag_is_reported_under_the_flag(tmp_path, flag, value, said):
    result = CliRunner().invoke(app, ["run", "-o", str(tmp_path / "out"), "--model", "m", flag, value],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2 and said in result.output, result.output
    assert "<defaults>" not in result.output and "Traceback" not in result.output
