"""Sharded runs (``--shard i/N``) and ``condor merge``, through the CLI against the local HTTP server.

The scripted model is deterministic (answers depend on the prompt only), and for half of the leaves it
writes the same questions for every task, so duplicates fall into different shards: the merged run
must still hold exactly the records of one unsharded run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from condor_responder import respond
from typer.testing import CliRunner

from condor.cli.main import app
from condor.config import ConfigError, load_config
from condor.run.shards import parse_shard, plan_digest, shard_of
from fake_server import FakeChatServer

SHARDS = 3


def shared_questions(body: dict) -> str:
    """``respond``, but for half of the leaves every task gets the same three questions about the tag."""
    prompt = body["messages"][-1]["content"]
    tag = re.search(r"Knowledge tag[:：]\s*(.+)", prompt)
    if tag and hashlib.sha256(tag.group(1).encode()).digest()[0] % 2 == 0:
        topic = tag.group(1).strip()
        qs = {"easy": f"Could you explain the basics of {topic} for someone who has never tried it before?",
              "medium": f"I keep getting mixed advice about {topic}; which common approach works best at home and why?",
              "hard": f"Design a three-week plan to get good at {topic} on a small budget, with the trade-offs of each step."}
        if (body.get("response_format") or {}).get("json_schema"):
            return json.dumps(qs)
        return "".join(f"[{k.title()}][Question Start]{v}[Question End]\n" for k, v in qs.items())
    return respond(body)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def cli(*args: str, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(responder=shared_questions) as started:
        yield started


@pytest.fixture(scope="module")
def runs(tmp_path_factory, server):
    """One unsharded run and the same run in three shards."""
    root = tmp_path_factory.mktemp("shards")
    config = root / "lexical.yaml"  # the on-topic gate works per record either way; lexical is quicker
    config.write_text("pipeline:\n  relevance: lexical\n")
    common = ["-c", config, "--leaves", "6", "--tasks", "domain_qa,view,creation", "--rounds", "1", "--seed", "3",
              "--base-url", server.base_url, "--model", "fake-model", "--quiet"]
    cli("run", "-o", root / "full", *common)
    for index in range(SHARDS):
        cli("run", "-o", root / f"s{index}", "--shard", f"{index}/{SHARDS}", *common)
    return root, common


def merged(root: Path, *names: str, out: str = "merged", code: int = 0):
    target = root / out
    shutil.rmtree(target, ignore_errors=True)
    return cli("merge", *[root / name for name in names], "-o", target, code=code)


def test_shard_specs_and_membership_are_stable():
    assert parse_shard("2/5") == (2, 5) and parse_shard(" 0/1 ") == (0, 1)
    for bad in ["5/5", "1/0", "-1/3", "a/b", "1", "1/2/3"]:
        with pytest.raises(ValueError):
            parse_shard(bad)
    ids = [f"en/{i:012x}/domain_qa" for i in range(3000)]
    counts = [sum(1 for i in ids if shard_of(i, 4) == s) for s in range(4)]
    assert min(counts) > 650, counts  # balanced
    assert shard_of("en/abc/view", 7) == shard_of("en/abc/view", 7)
    assert plan_digest(["b", "a"]) == plan_digest(["a", "b"])


def test_shard_setting_is_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("pipeline:\n  shard: 3/3\n")
    with pytest.raises(ConfigError, match="pipeline.shard"):
        load_config(path)
    path.write_text("pipeline:\n  shard: ' 1/3'\n")
    assert load_config(path).pipeline.shard == "1/3"


def test_each_shard_runs_a_disjoint_part_of_the_plan(runs):
    root, _ = runs
    full = {item["id"] for item in read_jsonl(root / "full" / "plan.jsonl")}
    parts = [{item["id"] for item in read_jsonl(root / f"s{i}" / "plan.jsonl")} for i in range(SHARDS)]
    assert all(parts) and set().union(*parts) == full and sum(map(len, parts)) == len(full)
    manifest = json.loads((root / "s1" / "manifest.json").read_text())
    assert manifest["shard"]["plan_items"] == len(full) and manifest["shard"]["deferred"] == {
        "question_filter": [["near_duplicates", [0.8, "crc32"]]]}


def test_merged_shards_hold_the_records_of_one_unsharded_run(runs, server):
    root, common = runs
    full = root / "full"
    # Inside each shard the duplicates of other shards' questions were kept (near-duplicate removal
    # is the merge's business), so the shards hold more than the whole.
    shard_rows = sum(len(read_jsonl(root / f"s{i}" / "sft.jsonl")) for i in range(SHARDS))
    assert shard_rows > len(read_jsonl(full / "sft.jsonl"))
    result = merged(root, "s2", "s0", "s1")
    assert "near-duplicates across shards removed" in result.output
    out = root / "merged"
    for name in ("sft.jsonl", "preference.jsonl"):
        assert read_jsonl(out / name) == read_jsonl(full / name), name
    key = lambda r: (r["stage"], r["reason"], r["id"])  # noqa: E731
    assert sorted(map(key, read_jsonl(out / "rejected.jsonl"))) == sorted(map(key, read_jsonl(full / "rejected.jsonl")))
    assert any(r["reason"] == "exact_duplicate" for r in read_jsonl(out / "rejected.jsonl"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["shard"] for m in manifest["merged_from"]] == ["0/3", "1/3", "2/3"]
    assert "shard" not in manifest and manifest["config"]["pipeline"]["shard"] is None

    # The unsharded command finds every step of the merged run finished: no request, no step redone,
    # same dataset.
    before = server.request_count
    state = lambda: {path: (path.read_text(), path.stat().st_mtime_ns) for path in (out / "stages").glob("*/complete.json")}  # noqa: E731
    markers = state()
    cli("run", "-o", out, *common)
    assert server.request_count == before
    assert markers and state() == markers
    assert read_jsonl(out / "sft.jsonl") == read_jsonl(full / "sft.jsonl")
    # And it reads like any run.
    cli("export", out, "--format", "messages", "-o", root / "exported")
    assert len(read_jsonl(root / "exported" / "train.jsonl")) == len(read_jsonl(full / "sft.jsonl"))
    cli("report", out, "-o", root / "report.html", "--no-embeddings")
    assert (root / "report.html").stat().st_size > 1000


def test_void_then_refine_in_each_shard_merges_to_the_same_run(runs):
    root, common = runs
    void_args = [a for a in common]
    rounds = void_args.index("--rounds")
    del void_args[rounds:rounds + 2]
    for index in range(2):
        cli("void", "-o", root / f"v{index}", "--shard", f"{index}/2", *void_args)
        cli("refine", "-o", root / f"v{index}", "--rounds", "1", *void_args[void_args.index("--base-url"):])
    merged(root, "v0", "v1", out="void-refine")
    assert read_jsonl(root / "void-refine" / "sft.jsonl") == read_jsonl(root / "full" / "sft.jsonl")


# ------------------------------------------------------------------------------------ mismatches


def copy(root: Path, name: str, to: str) -> Path:
    target = root / to
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(root / name, target)
    return target


@pytest.mark.parametrize("names, message", [
    (("s0", "s1"), "shard 2/3 is missing"),
    (("s0", "s1", "s1", "s2"), "shard 1/3 is given twice"),
    (("full", "s1", "s2"), "is not a shard: it was not made with --shard i/N"),
])
def test_a_missing_repeated_or_foreign_directory_is_refused(runs, names, message):
    root, _ = runs
    result = merged(root, *names, out="bad", code=2)
    assert message in result.output and len(result.output.strip().splitlines()) == 1
    assert not (root / "bad").exists()


def test_shards_of_other_settings_or_another_n_are_refused(runs):
    root, common = runs
    seeded = [a if a != "3" else "4" for a in common]  # --seed 4
    cli("run", "-o", root / "other-seed", "--shard", f"2/{SHARDS}", *seeded)
    result = merged(root, "s0", "s1", "other-seed", out="bad", code=2)
    assert "other settings" in result.output and "pipeline.seed: 3 != 4" in result.output
    cli("run", "-o", root / "halves", "--shard", "1/2", *common)
    result = merged(root, "s0", "s1", "s2", "halves", out="bad", code=2)
    assert "the shards of one run share N" in result.output


def test_an_unfinished_shard_is_refused(runs):
    root, _ = runs
    broken = copy(root, "s1", "s1-unfinished")
    (broken / "stages" / "select" / "complete.json").unlink()
    result = merged(root, "s0", "s1-unfinished", "s2", out="bad", code=2)
    assert "has not finished (step 'select' is incomplete)" in result.output


def test_an_edited_plan_is_refused(runs):
    root, _ = runs
    edited = copy(root, "s1", "s1-edited")
    plan = edited / "plan.jsonl"
    plan.write_text("".join(line + "\n" for line in plan.read_text().splitlines()[:-1]))
    result = merged(root, "s0", "s1-edited", "s2", out="bad", code=2)
    assert "a shard's plan was edited" in result.output
    moved = copy(root, "s1", "s1-moved")
    stolen = (root / "s2" / "plan.jsonl").read_text().splitlines()[0]
    with (moved / "plan.jsonl").open("a") as handle:
        handle.write(stolen + "\n")
    result = merged(root, "s0", "s1-moved", "s2", out="bad", code=2)
    assert "does not belong to shard 1/3" in result.output


def test_a_tree_file_changed_between_shards_is_refused(tmp_path, server):
    tree = tmp_path / "tree.yaml"
    body = "format: condor-tree v1\nname: t\nlanguage: en\ntree:\n  Cooking:\n    Baking: [Sourdough bread, Layer cakes]\n"
    tree.write_text(body + "    Grilling: [Charcoal grills]\n")
    config = tmp_path / "lexical.yaml"
    config.write_text("pipeline:\n  relevance: lexical\n")
    common = ["-c", config, "--tree", tree, "--leaves", "3", "--tasks", "domain_qa", "--rounds", "0",
              "--base-url", server.base_url, "--model", "fake-model", "--quiet"]
    cli("run", "-o", tmp_path / "a", "--shard", "0/2", *common)
    tree.write_text(body + "    Grilling: [Gas grills]\n")
    cli("run", "-o", tmp_path / "b", "--shard", "1/2", *common)
    result = cli("merge", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "m", code=2)
    assert "made from another plan" in result.output


def small_run(tmp_path: Path, server, tree: Path, benchmark: Path, few_shot: Path, *more) -> list:
    return ["--tree", tree, "--decontaminate", benchmark, "--leaves", "3", "--tasks", "domain_qa", "--rounds", "0",
            "--base-url", server.base_url, "--model", "fake-model", "--quiet", *more]


def test_files_are_compared_by_content_and_machine_settings_may_differ(tmp_path, server):
    tree_body = ("format: condor-tree v1\nname: t\nlanguage: en\ntree:\n  Cooking:\n"
                 "    Baking: [Sourdough bread, Layer cakes]\n    Grilling: [Charcoal grills]\n")
    benchmark_body = '{"prompt": "Which of these four planets has the most moons orbiting it today?"}\n'
    few_shot_body = "Cooking:\n  - How do I keep a sourdough starter alive while travelling?\n"
    for machine in ("a", "b", "c"):
        (tmp_path / machine).mkdir()
        (tmp_path / machine / "tree.yaml").write_text(tree_body)
        (tmp_path / machine / "bench.jsonl").write_text(benchmark_body)
        (tmp_path / machine / "few.yaml").write_text(few_shot_body)
        # Each machine its own executor settings, cache file and concurrency.
        (tmp_path / machine / "c.yaml").write_text(
            "pipeline: {relevance: lexical, few_shot_file: %s}\n" % (tmp_path / machine / "few.yaml")
            + ("ray: {num_cpus: 1, workers: 3}\n" if machine == "b" else ""))

    def shard(machine: str, index: int, *more) -> Path:
        where = tmp_path / machine
        cli("run", "-o", where / "run", "--shard", f"{index}/2", "-c", where / "c.yaml", "--cache", where / "c.sqlite",
            *small_run(tmp_path, server, where / "tree.yaml", where / "bench.jsonl", where / "few.yaml", *more))
        return where / "run"

    a, b = shard("a", 0), shard("b", 1, "--concurrency", "7")
    result = cli("merge", a, b, "-o", tmp_path / "merged")
    assert "merged 2 shards" in result.output
    # The same files with other content on the third machine: refused, naming what differs.
    (tmp_path / "c" / "few.yaml").write_text(few_shot_body.replace("travelling", "on holiday"))
    c = shard("c", 1)
    result = cli("merge", a, c, "-o", tmp_path / "m2", code=2)
    assert "another task or few-shot file" in result.output and "few_shot_file" in result.output
    (tmp_path / "c" / "few.yaml").write_text(few_shot_body)
    (tmp_path / "c" / "bench.jsonl").write_text(benchmark_body.replace("moons", "rings"))
    shutil.rmtree(c)
    c = shard("c", 1)
    result = cli("merge", a, c, "-o", tmp_path / "m3", code=2)
    assert "another filter settings or benchmark file" in result.output and "question_filter" in result.output


@pytest.mark.slow
@pytest.mark.ray
def test_a_shard_run_on_ray_merges_with_one_run_locally(tmp_path, server):
    pytest.importorskip("ray")
    config = tmp_path / "c.yaml"
    config.write_text("pipeline: {relevance: lexical}\nray: {num_cpus: 1}\n")
    common = ["-c", config, "--leaves", "3", "--tasks", "domain_qa,view", "--rounds", "1", "--seed", "5",
              "--base-url", server.base_url, "--model", "fake-model", "--quiet"]
    cli("run", "-o", tmp_path / "full", *common)
    cli("run", "-o", tmp_path / "s0", "--shard", "0/2", "--executor", "ray", *common)
    cli("run", "-o", tmp_path / "s1", "--shard", "1/2", *common)
    cli("merge", tmp_path / "s0", tmp_path / "s1", "-o", tmp_path / "merged")
    assert read_jsonl(tmp_path / "merged" / "sft.jsonl") == read_jsonl(tmp_path / "full" / "sft.jsonl")


def test_the_shards_stay_locked_while_they_are_merged(runs):
    from contextlib import ExitStack

    from condor.run.merge import _open_shard

    root, _ = runs
    probe = ("import fcntl, os, sys\n"
             f"fd = os.open({str(root / 's1' / '.lock')!r}, os.O_RDWR)\n"
             "try:\n    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)\nexcept BlockingIOError:\n    sys.exit(3)\n")
    with ExitStack() as locks:
        _open_shard(root / "s1", locks)
        # A `condor run -o s1` started now would find the shard locked until the merge is over.
        assert subprocess.run([sys.executable, "-c", probe]).returncode == 3
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0


def test_what_a_killed_merge_left_is_removed_and_a_running_one_is_waited_for(runs):
    root, _ = runs
    stale = root / ".merged.merging-4194303"  # a merge killed with SIGKILL: nothing cleaned up
    (stale / "stages").mkdir(parents=True, exist_ok=True)
    (stale / "plan.jsonl").write_text("half written\n")
    merged(root, "s0", "s1", "s2")
    assert not stale.exists() and (root / "merged" / "sft.jsonl").exists()

    building = root / ".again.merging-12345"
    building.mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, time\n"
        f"fd = os.open({str(building / '.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = merged(root, "s0", "s1", "s2", out="again", code=2)
        assert "another condor merge is writing" in result.output and building.exists()
    finally:
        holder.kill()
        holder.wait()
    shutil.rmtree(building)


def test_a_shard_still_being_written_is_refused(runs):
    root, _ = runs
    lock = root / "s1" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX); os.pwrite(fd, str(os.getpid()).encode(), 0)\n"
        "print('locked', flush=True); time.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = merged(root, "s0", "s1", "s2", out="bad", code=2)
        assert "in use by another condor process" in result.output
    finally:
        holder.kill()
        holder.wait()


def test_an_existing_output_is_refused(runs):
    root, _ = runs
    (root / "taken").mkdir(exist_ok=True)
    (root / "taken" / "keep.txt").write_text("mine")
    result = cli("merge", root / "s0", root / "s1", root / "s2", "-o", root / "taken", code=2)
    assert "already exists" in result.output and (root / "taken" / "keep.txt").read_text() == "mine"


def test_shards_cannot_grow_a_plan_or_split_a_file(tmp_path, server):
    args = ["--base-url", server.base_url, "--model", "fake-model", "--quiet"]
    result = cli("run", "-o", tmp_path / "t", "--shard", "0/2", "--target", "10", *args, code=2)
    assert "--shard cannot be combined with --target" in result.output
    config = tmp_path / "c.yaml"
    config.write_text("pipeline:\n  shard: 0/2\n")
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps({"question": "What is a prime number?", "answer": "A number with two divisors."}) + "\n")
    result = cli("refine", "-o", tmp_path / "r", "--input", data, "-c", config, *args, code=2)
    assert "not a dataset given with --input" in result.output


def test_gates_that_keep_state_are_left_to_the_merge_unless_they_say_otherwise():
    from condor.filters.base import Gate
    from condor.filters.gates import NearDuplicates
    from condor.filters.relevance import OnTopic, TopicScorer
    from condor.run.shards import defer_cross_record_gates
    from condor.run.steps import GateStep

    class Counting(Gate):  # a user's gate with the default flags: it may keep state
        name = "counting"

        def check(self, record):
            return record

    class MiniLMLike(TopicScorer):
        kind = "minilm"

    steps = [GateStep("question_filter", gates=(OnTopic(TopicScorer()), OnTopic(MiniLMLike()), NearDuplicates(0.8),
                                                Counting()))]
    (kept,), deferred = defer_cross_record_gates(steps)
    assert [g.name for g in kept.gates] == ["on_topic", "on_topic"]
    assert [name for name, _ in deferred["question_filter"]] == ["near_duplicates", "counting"]
