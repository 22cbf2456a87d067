"""Steps as data, a reader that needs no backend, many writers, the lock: through the real local server."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from condor_responder import respond
from fake_server import FakeChatServer
from typer.testing import CliRunner

import condor
from condor.cli.main import app
from condor.filters.base import Gate
from condor.run.records import RunReader
from condor.run.steps import GateStep, ModelStep, resolve
from condor.run.directory import RunDirectory
from condor.run.store import RunStoreError
from condor.stages.base import Rejection

ROOT = Path(__file__).resolve().parents[2]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


class DropWord(Gate):
    """The toy filter of the architecture issue: drops questions that contain a word."""

    name = "drop_word"

    def __init__(self, word: str) -> None:
        self.word = word

    @property
    def settings(self):
        return self.word

    def check(self, record):
        if self.word in record["question"].lower():
            return Rejection(self.name, "banned_word", f"the question mentions {self.word!r}", record)
        return record


def server_config(server: FakeChatServer, **pipeline):
    overrides = {"llm.base_url": server.base_url, "llm.model": "fake-model"}
    overrides.update({f"pipeline.{k}": v for k, v in pipeline.items()})
    return condor.load_config(None, overrides)


def test_a_toy_gate_joins_the_pipeline_through_the_public_step_list(tmp_path, fake_server):
    fake_server.responder = respond  # every "medium" question it writes mentions "a small club"
    cfg = server_config(fake_server, leaves=2, tasks=["view", "creation"])
    steps = condor.insert_after(condor.pipeline_steps(cfg), "question_filter", GateStep("no_club", gates=(DropWord("club"),)))
    result = condor.run_pipeline(cfg, tmp_path / "out", steps=steps)

    sft = read_jsonl(result.export.paths["sft"])
    assert sft and all("club" not in row["messages"][0]["content"] for row in sft)
    assert {row["meta"]["difficulty"] for row in sft} == {"easy", "hard"}
    dropped = [r for r in read_jsonl(result.export.paths["rejected"]) if r["stage"] == "no_club"]
    assert len(dropped) == 4 and {r["reason"] for r in dropped} == {"banned_word"}
    # The answer step read the new gate, not question_filter: no medium question was ever answered.
    asked = [body for body in fake_server.request_log if any("small club" in m["content"] for m in body["messages"])]
    assert asked == []
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["steps"]["answer"]["reads"] == "no_club"
    assert manifest["stages"]["no_club"]["rejections"] == 4

    before = fake_server.request_count
    condor.run_pipeline(cfg, tmp_path / "out", steps=steps)
    assert fake_server.request_count == before  # finished steps, the toy one included, make no calls


def test_step_names_are_unique_and_the_first_step_says_what_it_reads():
    gate = GateStep("g", gates=(DropWord("x"),))
    with pytest.raises(ValueError, match="unique"):
        resolve([GateStep("g", reads="plan"), gate])
    with pytest.raises(ValueError, match="must say which step it reads"):
        resolve([gate])
    with pytest.raises(ValueError, match="needs a stage"):
        ModelStep("m", reads="plan")
    assert resolve([GateStep("a", reads="plan"), gate])[1].reads == "a"


def test_export_rebuilds_the_dataset_with_the_server_stopped(tmp_path):
    server = FakeChatServer(responder=respond).start()
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "-o", str(out), "--leaves", "2", "--tasks", "view", "--quiet",
                                      "--base-url", server.base_url, "--model", "fake-model"])
    assert result.exit_code == 0, result.output
    server.stop()
    before = {name: (out / name).read_bytes() for name in ("sft.jsonl", "preference.jsonl", "rejected.jsonl")}
    for name in before:
        (out / name).unlink()
    result = CliRunner().invoke(app, ["export", str(out)])
    assert result.exit_code == 0, result.output
    assert {name: (out / name).read_bytes() for name in before} == before
    assert "dataset:" in result.output and "(6 rows)" in result.output
    elsewhere = tmp_path / "copy"
    result = CliRunner().invoke(app, ["export", str(out), "-o", str(elsewhere)])
    assert result.exit_code == 0, result.output
    assert (elsewhere / "sft.jsonl").read_bytes() == before["sft.jsonl"]


def test_export_of_something_that_is_not_a_run_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["export", str(tmp_path)])
    assert result.exit_code == 2 and "not a Condor run directory" in result.output
    assert "Traceback" not in result.output


def test_the_reader_needs_no_backend_and_agrees_with_the_files(tmp_path, fake_server):
    fake_server.responder = respond
    out = tmp_path / "out"
    condor.run_pipeline(server_config(fake_server, leaves=2, tasks=["view"], rounds=2), out)
    fake_server.stop()
    reader = condor.read_run(out)
    assert [r["id"] for r in reader.final_records()] == [row["meta"]["id"] for row in read_jsonl(out / "sft.jsonl")]
    assert list(reader.rejections()) == read_jsonl(out / "rejected.jsonl")
    assert reader.ancestors("select") == [
        "questions", "question_filter", "answer", "answer_filter", "critique_1", "refine_1", "critique_2",
        "refine_2", "select"]
    assert reader.count("refine_2") == 6 and all(len(r["versions"]) == 3 for r in reader.records("refine_2"))


def test_a_step_takes_several_writers_merged_on_read(tmp_path):
    run = RunDirectory(tmp_path)
    first, second = run.stage("answer", writer="block-0"), run.stage("answer", writer="block-1")
    for store, ids in ((first, ["a", "b"]), (second, ["c", "d"])):
        store.open()
        for input_id in ids:
            store.append({"input_id": input_id, "records": [{"id": input_id, "by": store.writer}], "rejections": []})
        store.close()
        store.mark_writer_done({"units": len(ids)})
    merged = run.stage("answer")
    assert sorted(r["id"] for r in merged.iter_records()) == ["a", "b", "c", "d"]
    assert [p.name for p in merged.shard_paths()] == ["units-block-0.jsonl", "units-block-1.jsonl"]
    assert merged.writers_done() == {"block-0", "block-1"}
    # An input redone by another writer: the later write wins, wherever it is.
    time.sleep(0.01)
    first.open()
    first.append({"input_id": "c", "records": [{"id": "c", "by": "redo"}], "rejections": []})
    first.close()
    assert {r["id"]: r["by"] for r in merged.iter_records()}["c"] == "redo"
    with pytest.raises(ValueError, match="writer names"):
        run.stage("answer", writer="../escape")


def test_a_second_process_is_refused_while_the_first_holds_the_run(tmp_path):
    run = RunDirectory(tmp_path)
    code = (
        "import sys\nfrom condor.run.directory import RunDirectory\nfrom condor.run.store import RunStoreError\n"
        "try:\n    RunDirectory(sys.argv[1]).lock().acquire()\n"
        "except RunStoreError as exc:\n    print(exc); sys.exit(3)\n"
    )
    with run.lock():
        with run.lock():  # the same process may take it again (a pipeline that exports)
            pass
        other = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
        assert other.returncode == 3, other.stdout + other.stderr
        assert "in use by another condor process" in other.stdout and "pid" in other.stdout
    free = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert free.returncode == 0, free.stdout + free.stderr


def _start_server(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port_file = tmp_path / "port"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port-file", str(port_file), *args])
    deadline = time.monotonic() + 20
    while not port_file.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("fake server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}/v1"


@pytest.mark.slow
def test_two_generate_processes_on_one_directory(tmp_path):
    server, base_url = _start_server(tmp_path, "--latency", "0.05")
    prompts, out = tmp_path / "prompts.jsonl", tmp_path / "out"
    prompts.write_text("".join(json.dumps({"id": f"p{i}", "prompt": f"prompt {i}"}) + "\n" for i in range(300)))
    command = [sys.executable, "-m", "condor.cli.main", "generate", str(prompts), "-o", str(out),
               "--base-url", base_url, "--model", "fake-model", "--quiet", "--concurrency", "4"]
    try:
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not (out / "stages" / "generate" / "units.jsonl").exists():
            assert time.monotonic() < deadline and first.poll() is None, "the first process did not start working"
            time.sleep(0.05)
        started = time.monotonic()
        second = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert time.monotonic() - started < 15
        assert second.returncode == 2
        assert "in use by another condor process" in second.stderr and str(first.pid) in second.stderr
        assert first.poll() is None  # the refusal came while the first was still at work
        stdout, stderr = first.communicate(timeout=120)
        assert first.returncode == 0, stderr
        rows = [json.loads(line) for line in (out / "output.jsonl").read_text().splitlines()]
        assert [r["id"] for r in rows] == [f"p{i}" for i in range(300)] and all(r["output"] for r in rows)
    finally:
        server.kill()
        server.wait()
