"""The run directory: atomic units, torn-tail repair, corruption errors, manifest format checks."""

import json

import pytest

from condor.run.directory import RUN_FORMAT, RunDirectory
from condor.run.store import RunStoreError, atomic_write_lines


def test_units_round_trip_and_done_inputs(tmp_path):
    store = RunDirectory(tmp_path).stage("answer")
    store.open()
    store.append({"input_id": "a", "records": [{"id": "a/1"}], "rejections": []})
    store.append({"input_id": "b", "records": [], "rejections": [{"reason": "empty"}]})
    store.append({"input_id": "c", "records": [], "rejections": [], "error": "http 500"})
    store.close()
    assert set(store.done_map()) == {"a", "b", "c"}
    assert set(store.done_map(include_failed=False)) == {"a", "b"}
    assert [r["id"] for r in store.iter_records()] == ["a/1"]
    assert [r["reason"] for r in store.iter_rejections()] == ["empty"]
    assert [u["input_id"] for u in store.iter_failures()] == ["c"]


def test_retried_failure_supersedes_the_old_unit(tmp_path):
    store = RunDirectory(tmp_path).stage("s")
    store.open()
    store.append({"input_id": "x", "records": [], "rejections": [], "error": "timeout"})
    store.append({"input_id": "x", "records": [{"id": "x"}], "rejections": []})
    store.close()
    assert [r["id"] for r in store.iter_records()] == ["x"]
    assert list(store.iter_failures()) == []


def test_torn_last_line_is_cut_on_open(tmp_path):
    store = RunDirectory(tmp_path).stage("s")
    store.open()
    store.append({"input_id": "a", "records": [], "rejections": []})
    store.close()
    with open(store.units_path, "ab") as handle:
        handle.write(b'{"input_id": "b", "recor')  # a writer killed mid-line
    assert set(store.done_map()) == {"a"}
    store.open()
    store.append({"input_id": "b", "records": [], "rejections": []})
    store.close()
    lines = store.units_path.read_text().splitlines()
    assert [json.loads(line)["input_id"] for line in lines] == ["a", "b"]


def test_corrupt_middle_line_is_an_error_naming_the_line(tmp_path):
    store = RunDirectory(tmp_path).stage("s")
    store.directory.mkdir(parents=True)
    store.units_path.write_text('{"input_id": "a"}\nnot json\n{"input_id": "c"}\n')
    with pytest.raises(RunStoreError, match=r"units.jsonl:2"):
        set(store.done_map())


def test_manifest_format_is_checked(tmp_path):
    run = RunDirectory(tmp_path)
    run.save_manifest()
    assert json.loads((tmp_path / "manifest.json").read_text())["format"] == RUN_FORMAT
    (tmp_path / "manifest.json").write_text('{"format": "condor-run v0"}')
    with pytest.raises(RunStoreError, match="expected 'condor-run v1'"):
        RunDirectory(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(RunStoreError, match="not valid JSON"):
        RunDirectory(tmp_path)


def test_inputs_fingerprint_guards_resume(tmp_path):
    run = RunDirectory(tmp_path)
    run.bind_inputs("prompts", "aaaa")
    RunDirectory(tmp_path).bind_inputs("prompts", "aaaa")
    with pytest.raises(RunStoreError, match="different prompts"):
        RunDirectory(tmp_path).bind_inputs("prompts", "bbbb")


def test_atomic_write_leaves_no_partial_file_on_error(tmp_path):
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")

    def lines():
        yield "one"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write_lines(target, lines())
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_latest_index_knows_each_inputs_last_unit_and_where_it_is(tmp_path):
    from condor.run.store import DONE, FAILED, TRANSIENT

    store = RunDirectory(tmp_path).stage("s")
    store.open()
    store.append({"input_id": "a", "input_hash": "h1", "records": [], "rejections": [], "error": "timeout", "transient": True})
    store.append({"input_id": "b", "input_hash": "h2", "records": [], "rejections": [], "error": "http 400"})
    store.append({"input_id": "a", "input_hash": "h3", "records": [{"id": "a"}], "rejections": []})
    store.close()
    index = store.latest_index()
    assert {key: value[:2] for key, value in index.items()} == {"a": ("h3", DONE), "b": ("h2", FAILED)}
    shard, offset = index["a"][2:]
    assert store.read_at(store.shard_paths()[shard], offset)["records"] == [{"id": "a"}]
    store.open()
    store.append({"input_id": "c", "records": [], "rejections": [], "error": "drop", "transient": True})
    store.close()
    assert store.latest_index()["c"][1] == TRANSIENT


def test_compaction_keeps_one_unit_per_current_input_and_the_step_reads_plain(tmp_path):
    store = RunDirectory(tmp_path).stage("s")
    other = store.for_writer("block-1")
    for writer, ids in ((store, ["a", "b", "a"]), (other, ["c"])):
        writer.open()
        for input_id in ids:
            writer.append({"input_id": input_id, "records": [{"id": input_id, "n": writer.writer}], "rejections": []})
        writer.close()
    assert not store.is_plain()
    assert store.compact(frozenset({"b"})) == 2  # "a" once (its latest unit), "c"; "b" is gone upstream
    assert [p.name for p in store.shard_paths()] == ["units.jsonl"]
    store.mark_complete({"plain": True})
    assert store.is_plain()
    assert sorted(r["id"] for r in store.iter_records()) == ["a", "c"]
    # A plain step is read line by line: a unit added afterwards without compaction would show twice,
    # which is why only the executor that compacted may mark it so (and a rerun clears the marker).
    store.clear_complete()
    assert not store.is_plain()
