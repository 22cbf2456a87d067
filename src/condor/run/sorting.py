"""Records in id order without holding them all in memory: an external merge sort.

Gates that keep state (near duplicates) must see records in id order, and the dataset files are
written in id order; a run can hold millions of records, so sorting them in a list would make memory
grow with the run. :func:`sorted_records` keeps at most ``run_size`` records in memory: it sorts them
in runs, spills each run to a temporary file, and merges the files (``heapq.merge``). Input that is
small, or already in order, never touches the disk.

What it leaves out: stable ties (ids are unique in a step) and records that are not JSON-able (run
records always are).
"""

from __future__ import annotations

import heapq
import json
import os
import tempfile
from contextlib import ExitStack
from typing import Any, Callable, Iterable, Iterator

Record = dict[str, Any]
#: Records sorted in memory before a run is spilled to disk.
RUN_SIZE = 4096


def by_id(record: Record) -> Any:
    return record["id"]


def is_sorted(records: Iterable[Record], key: Callable[[Record], Any] = by_id) -> bool:
    """Whether ``records`` come in strictly increasing ``key`` order (reads them once, keeps one key)."""
    previous = None
    for record in records:
        current = key(record)
        if previous is not None and not previous < current:
            return False
        previous = current
    return True


def sorted_records(
    records: Iterable[Record], key: Callable[[Record], Any] = by_id, *, run_size: int = RUN_SIZE
) -> Iterator[Record]:
    """``records`` sorted by ``key``, in memory bounded by ``run_size`` records (plus one per spilled run)."""
    runs: list[str] = []
    with tempfile.TemporaryDirectory(prefix="condor-sort-") as scratch, ExitStack() as files:
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) >= run_size:
                runs.append(_spill(sorted(batch, key=key), scratch, len(runs)))
                batch = []
        batch.sort(key=key)
        if not runs:
            yield from batch
            return
        if batch:
            runs.append(_spill(batch, scratch, len(runs)))
        del batch
        streams = [_read(files.enter_context(open(path, encoding="utf-8"))) for path in runs]
        yield from heapq.merge(*streams, key=key)


def _spill(batch: list[Record], scratch: str, number: int) -> str:
    path = os.path.join(scratch, f"run-{number}.jsonl")
    with open(path, "w", encoding="utf-8") as handle:
        for record in batch:
            handle.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")))
            handle.write("\n")
    return path


def _read(handle) -> Iterator[Record]:
    for line in handle:
        yield json.loads(line)
