"""The external sort (run/sorting.py): records in id order with a bounded number in memory."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from condor.run import sorting
from condor.run.sorting import is_sorted, sorted_records


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=60), st.integers(1, 7))
def test_sorted_records_matches_sorted_for_any_ids_and_run_size(ids, run_size):
    records = [{"id": i, "n": n} for n, i in enumerate(ids)]
    assert [r["id"] for r in sorted_records(records, run_size=run_size)] == sorted(ids)
    assert is_sorted(sorted_records(records, run_size=run_size))


def test_large_inputs_spill_sorted_runs_to_disk_and_merge_them(monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(sorting.tempfile, "tempdir", None)

    def records():
        for i in range(1000):
            yield {"id": f"{(i * 7919) % 1000:04d}", "text": "x" * 50}

    out = sorted_records(records(), run_size=100)
    first = next(out)
    assert first["id"] == "0000"
    assert len(os.listdir(next(tmp_path.iterdir()))) == 10  # ten sorted runs on disk
    rest = [r["id"] for r in out]
    assert rest == [f"{i:04d}" for i in range(1, 1000)]
    assert not list(tmp_path.iterdir())  # the scratch directory is gone once the merge is done


def test_is_sorted_wants_strictly_increasing_ids():
    assert is_sorted([{"id": "a"}, {"id": "b"}])
    assert not is_sorted([{"id": "b"}, {"id": "a"}])
    assert not is_sorted([{"id": "a"}, {"id": "a"}])
    assert is_sorted([])

