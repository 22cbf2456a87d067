"""`condor run` end to end on the real embedded SmolLM2 model: what `make demo` does, smaller."""

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from condor.cli.main import app
from condor.filters.degenerate import degenerate

pytestmark = [pytest.mark.slow, pytest.mark.embedded]
pytest.importorskip("llama_cpp", reason="the embedded extra is installed by `make test`")


def test_refined_dataset_on_the_embedded_model(tmp_path):
    out = tmp_path / "demo"
    config = tmp_path / "seeded.yaml"
    # A seeded sampler makes the tiny model's output repeatable. Which seed gives a usable record depends on
    # the prompts: after the question prompt changed, seed 11 gave two unreadable question sets, 13 works.
    config.write_text("llm:\n  seed: 13\n")
    args = ["run", "-o", str(out), "-c", str(config), "--leaves", "1", "--tasks", "domain_qa,daily_chat",
            "--max-tokens", "160", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    sft = [json.loads(line) for line in (out / "sft.jsonl").read_text().splitlines()]
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    manifest = json.loads((out / "manifest.json").read_text())
    questions = manifest["stages"]["questions"]
    # Every question is accounted for: in the dataset or rejected with a reason.
    assert len(sft) + len(rejected) == questions["records"] + questions["rejections"]
    assert all(r["reason"] and r["stage"] for r in rejected)
    assert sft, "the tiny model produced no usable record at all"
    for row in sft:
        meta = row["meta"]
        assert meta["models"]["answerer"].startswith("embedded:SmolLM2-135M")
        assert meta["chosen"]["version"] < len(meta["versions"])
        assert row["messages"][1]["content"] == meta["versions"][meta["chosen"]["version"]]["answer"]
    # The gates held: nothing degenerate was kept, every kept question was scored against its tag, and a
    # refinement that failed its checks never replaced the answer before it.
    for row in sft:
        meta = row["meta"]
        assert degenerate(row["messages"][0]["content"]) is None and degenerate(row["messages"][1]["content"]) is None
        assert meta["relevance"]["score"] >= 0.05, meta["relevance"]
        for note in meta.get("refine_notes", []):
            if note["stage"].startswith("refine") and note["reason"].startswith("refinement_"):
                assert meta["chosen"]["version"] < len(meta["versions"])
    # Rejections are counted by reason in the manifest exactly as rejected.jsonl lists them.
    by_reason = Counter(r["reason"] for r in rejected)
    counted = Counter()
    for name, entry in manifest["stages"].items():
        if not manifest["steps"][name].get("carries"):
            counted.update(entry.get("reasons", {}))
    assert +counted == +by_reason
    assert any(len(row["meta"]["versions"]) == 2 for row in sft) or any(
        note["stage"].startswith(("critique", "refine")) for row in sft for note in row["meta"].get("refine_notes", [])
    )
    # A rerun of the finished pipeline is answered without loading work again.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and json.loads((out / "manifest.json").read_text())["stages"] == manifest["stages"]
