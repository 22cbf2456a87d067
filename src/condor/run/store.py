"""The run directory, write side: append-only shards of work units per step (the manifest and the lock
are :mod:`condor.run.directory`'s).

Layout::

    OUT/manifest.json                    format line, config, step graph, per-step status and token usage
    OUT/.lock                            held (flock) by the one process writing this run
    OUT/stages/<step>/units.jsonl        the main writer's shard: one line per finished input
    OUT/stages/<step>/units-<w>.jsonl    the shard of writer <w> (Ray blocks, split runs), merged on read
    OUT/stages/<step>/done-<w>.json      writer <w> finished its part
    OUT/stages/<step>/complete.json      written (atomically) once every input of the step is done

A *unit* line is the atomic commit of the work done for one input, so a crash can never leave half of one
input's outputs behind: either the whole line is there, or the input is redone (and answered from the
request cache). Lines are written with one ``os.write`` and are in the kernel's hands at once, so
``kill -9`` loses nothing that was written; only a torn last line (power loss, full disk) can be
incomplete, and it is cut off on the next open. Any other unreadable line is an error that names the file
and line, never silently skipped. Final files (``output.jsonl``, ``sft.jsonl``) are written to a temporary
name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from condor.codec import decode, encode
from condor.files import file_mode

# Whole-file writes and the unit encoding live in run/files.py; imported here too, where callers find them.
from condor.run.files import (  # noqa: F401  (atomic_write_* and dumps are found here by callers)
    RunStoreError, atomic_write_lines, atomic_write_text, cut_torn_tail, dumps, record_hash, refuse_symlink,
)

#: States of an input's latest unit (:meth:`StageStore.latest_index`).
#: STALE: made under other sampling settings than the ones asked for (provenance), so not done.
DONE, FAILED, TRANSIENT, STALE = 0, 1, 2, 3
_WRITER = re.compile(r"[A-Za-z0-9._-]{1,64}")


class StageStore:
    """The units of one step: one shard file per writer, merged on read.

    A writer appends to its own shard (``units.jsonl`` for the main writer, ``units-<writer>.jsonl``
    for others: Ray blocks, shards of a split run), so several writers never share a file. Reading
    merges every shard; when two shards hold a unit for the same input (a block redone by another
    writer), the one written last wins.
    """

    MAIN_WRITER = "main"

    def __init__(self, directory: Path, name: str, writer: str = MAIN_WRITER) -> None:
        if not _WRITER.fullmatch(writer):
            raise ValueError(f"writer names are letters, digits, '.', '_' and '-'; got {writer!r}")
        self.name = name
        self.writer = writer
        self.directory = directory
        self.units_path = directory / ("units.jsonl" if writer == self.MAIN_WRITER else f"units-{writer}.jsonl")
        self.complete_path = directory / "complete.json"
        self.writer_done_path = directory / f"done-{writer}.json"
        self._fd: int | None = None

    def for_writer(self, writer: str) -> "StageStore":
        """The same step, written by ``writer`` into its own shard."""
        return StageStore(self.directory, self.name, writer)

    def shard_paths(self) -> list[Path]:
        """Every writer's shard that exists, the main writer's first."""
        if not self.directory.is_dir():
            return []
        main = self.directory / "units.jsonl"
        others = sorted(self.directory.glob("units-*.jsonl"))
        return ([main] if main.exists() else []) + others

    # -- reading -------------------------------------------------------------------------------------

    @staticmethod
    def _read_shard(path: Path) -> Iterator[dict[str, Any]]:
        for _, unit in StageStore._read_shard_at(path):
            yield unit

    @staticmethod
    def _read_shard_at(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(byte offset, unit)`` of every complete line of one shard."""
        try:
            with path.open("rb") as handle:
                offset = 0
                for number, raw in enumerate(handle, start=1):
                    if not raw.endswith(b"\n"):
                        return  # torn tail of a crashed writer; cut off on its next append
                    yield offset, StageStore._parse_unit(path, number, raw)
                    offset += len(raw)
        except FileNotFoundError:
            return

    @staticmethod
    def _parse_unit(path: Path, number: int, raw: bytes) -> dict[str, Any]:
        try:
            unit = decode(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise RunStoreError(f"{path}: not UTF-8 text; the file was edited or corrupted") from None
        except json.JSONDecodeError as exc:
            raise RunStoreError(
                f"{path}:{number}: unreadable unit ({exc.msg}); the file was edited or corrupted"
            ) from None
        if not isinstance(unit, dict) or not isinstance(unit.get("input_id"), str):
            raise RunStoreError(
                f"{path}:{number}: not a unit (an object with a string 'input_id'); "
                "the file was edited or corrupted"
            )
        return unit

    def iter_units(self) -> Iterator[dict[str, Any]]:
        """Every unit of every shard, shard by shard in file order (superseded ones included).

        Unreadable lines are errors that name the file and line, never skipped.
        """
        for path in self.shard_paths():
            yield from self._read_shard(path)

    def own_units(self) -> Iterator[dict[str, Any]]:
        """The units of this writer's shard alone, in file order (a writer resuming its own part)."""
        return self._read_shard(self.units_path)

    def is_plain(self) -> bool:
        """Whether the step finished with exactly one unit per current input, all in the main shard.

        The executor says so in the completion marker after it has dropped superseded and stale units;
        such a step is read line by line, with no index of its units in memory.
        """
        marker = self.completion() if self.is_complete() else None
        return bool(marker and marker.get("plain")) and self.shard_paths() in ([], [self.directory / "units.jsonl"])

    def latest_index(self, settings: str | None = None) -> dict[str, tuple[str | None, int, int, int]]:
        """``{input_id: (input_hash, state, shard, byte offset)}`` of each input's latest unit.

        ``state`` is :data:`DONE`, :data:`FAILED` (a permanent failure), :data:`TRANSIENT` (a failure
        at the transport level) or, given the fingerprint ``settings`` of the sampling settings asked
        for, :data:`STALE` for a unit made under others; ``shard`` numbers :meth:`shard_paths` as it is now. Within a shard the
        later line wins; across shards the later write.
        """
        latest: dict[str, tuple[str | None, int, int, int]] = {}
        written: dict[str, float] = {}
        for shard, path in enumerate(self.shard_paths()):
            for offset, unit in self._read_shard_at(path):
                input_id = unit["input_id"]
                at = unit.get("at", 0.0)
                at = at if isinstance(at, (int, float)) else 0.0
                previous = latest.get(input_id)
                if previous is None or previous[2] == shard or at >= written[input_id]:
                    state = (TRANSIENT if unit.get("transient") else FAILED) if unit.get("error") else DONE
                    if settings is not None and unit.get("settings") not in (None, settings):
                        state = STALE
                    latest[input_id] = (unit.get("input_hash"), state, shard, offset)
                    written[input_id] = at
        return latest

    def read_at(self, path: Path, offset: int) -> dict[str, Any]:
        """The unit at byte ``offset`` of the shard ``path`` (from :meth:`latest_index`)."""
        with path.open("rb") as handle:
            handle.seek(offset)
            return self._parse_unit(path, 0, handle.readline())

    def _iter_latest(self) -> Iterator[dict[str, Any]]:
        if self.is_plain():
            yield from self.iter_units()
            return
        latest = {(shard, offset) for _, _, shard, offset in self.latest_index().values()}
        for shard, path in enumerate(self.shard_paths()):
            for offset, unit in self._read_shard_at(path):
                if (shard, offset) in latest:
                    yield unit

    def done_map(
        self, *, include_failed: bool = True, include_transient: bool = True, settings: str | None = None
    ) -> dict[str, str | None]:
        """``{input_id: input_hash}`` of inputs whose latest unit counts as done.

        Failures can be left out (all of them, or only transport-level ones) so that they are sent again.
        With ``settings`` (a fingerprint of the sampling settings), a unit made under other settings is
        not done: its input is processed again under these.
        """
        return {
            input_id: digest
            for input_id, (digest, state, _, _) in self.latest_index(settings).items()
            if state == DONE or (state == FAILED and include_failed) or (state == TRANSIENT and include_failed and include_transient)
        }

    def latest_units(self, current: dict[str, str | None] | None = None) -> Iterator[dict[str, Any]]:
        """The latest unit of each input.

        With ``current`` (``{input_id: input_hash}`` of the step's inputs as they are now), units of
        inputs that are no longer there, or whose content has changed since, are left out: they belong
        to an earlier state of the upstream step, not to this dataset.
        """
        for unit in self._iter_latest():
            input_id = unit["input_id"]
            if current is not None:
                if input_id not in current:
                    continue
                recorded, now = unit.get("input_hash"), current[input_id]
                if recorded is not None and now is not None and recorded != now:
                    continue
            yield unit

    def iter_records(self, current: dict[str, str | None] | None = None) -> Iterator[dict[str, Any]]:
        """Output records of the latest units (see :meth:`latest_units`)."""
        for unit in self.latest_units(current):
            yield from unit.get("records", ())

    def iter_rejections(self, current: dict[str, str | None] | None = None) -> Iterator[dict[str, Any]]:
        for unit in self.latest_units(current):
            yield from unit.get("rejections", ())

    def iter_failures(self, current: dict[str, str | None] | None = None) -> Iterator[dict[str, Any]]:
        for unit in self.latest_units(current):
            if unit.get("error"):
                yield unit

    # -- writing -------------------------------------------------------------------------------------
    def open(self) -> None:
        """Open this writer's shard for appending (its torn tail, if any, is cut first)."""
        self.refuse_links()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.refuse_links()
        cut_torn_tail(self.units_path)
        self._seq = sum(1 for _ in self._read_shard(self.units_path))
        self._fd = os.open(self.units_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)

    def refuse_links(self) -> None:
        """Raise :class:`RunStoreError` when ``stages/``, the step's folder or its shard is a symbolic link."""
        # The step's folder, ``stages/`` and the shard itself: a link anywhere below the run directory
        # would put run data wherever it points.
        for path in (self.directory.parent, self.directory, self.units_path):
            refuse_symlink(path)

    def append(self, unit: dict[str, Any]) -> None:
        if self._fd is None:
            self.open()
        unit["seq"] = self._seq
        unit["at"] = round(time.time(), 6)
        self._seq += 1
        data = encode(unit) + b"\n"
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def rewrite(self, units: Iterator[dict[str, Any]]) -> int:
        """Replace the whole step with ``units`` in the main shard (model-free steps are redone whole)."""
        with self.rewriter() as write:
            for unit in units:
                write(unit)
        return write.count  # type: ignore[attr-defined]

    @contextmanager
    def rewriter(self) -> Iterator[Callable[[dict[str, Any]], None]]:
        """``with store.rewriter() as write: write(unit)...``: the step's new content, unit by unit.

        The units go to a temporary file that replaces the main shard (and every other shard) only
        when the block ends without an error; until then readers see the step as it was.
        """
        self.refuse_links()
        self.clear_complete()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.refuse_links()
        fd, tmp = tempfile.mkstemp(prefix=f".{self.units_path.name}.", suffix=".tmp", dir=self.directory)
        os.fchmod(fd, file_mode())
        handle = os.fdopen(fd, "w", encoding="utf-8")

        def write(unit: dict[str, Any]) -> None:
            handle.write(dumps(unit))
            handle.write("\n")
            write.count += 1  # type: ignore[attr-defined]

        write.count = 0  # type: ignore[attr-defined]
        try:
            yield write
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            os.replace(tmp, self.units_path)
        except BaseException:
            handle.close()
            Path(tmp).unlink(missing_ok=True)
            raise
        for path in self.shard_paths():
            if path != self.units_path:
                path.unlink()
        for marker in self.directory.glob("done-*.json"):
            marker.unlink()

    def compact(self, drop: set[str] | frozenset[str] = frozenset()) -> int:
        """Keep only the latest unit of each input, less the inputs in ``drop``, in the main shard.

        Called by an executor that ran the step over its current inputs: superseded units and units of
        inputs that are gone (``drop``) leave, so that the step can be marked plain.
        """
        kept = (unit for unit in self._iter_latest() if unit["input_id"] not in drop)
        return self.rewrite(kept)

    def is_complete(self) -> bool:
        return self.complete_path.exists()

    def completion(self) -> dict[str, Any] | None:
        """The step's completion marker, or None when the step has not finished (or the marker is damaged)."""
        try:
            data = json.loads(self.complete_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def mark_complete(self, summary: dict[str, Any]) -> None:
        self.refuse_links()
        atomic_write_text(self.complete_path, json.dumps(summary, indent=2, ensure_ascii=False))

    def clear_complete(self) -> None:
        self.complete_path.unlink(missing_ok=True)

    def mark_writer_done(self, summary: dict[str, Any]) -> None:
        """This writer finished its part (the step as a whole may still be running elsewhere)."""
        atomic_write_text(self.writer_done_path, json.dumps(summary, indent=2, ensure_ascii=False))

    def writers_done(self) -> set[str]:
        if not self.directory.is_dir():
            return set()
        return {path.name[len("done-"):-len(".json")] for path in self.directory.glob("done-*.json")}
