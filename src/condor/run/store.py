"""The run directory: a manifest plus one append-only shard of work units per stage.

Layout::

    OUT/manifest.json                 format line, config, inputs, per-stage status and token usage
    OUT/stages/<stage>/units.jsonl    one line per finished input: its output records, rejections or error
    OUT/stages/<stage>/complete.json  written (atomically) once every input of the stage is done

A *unit* line is the atomic commit of the work done for one input, so a crash can never leave half of one
input's outputs behind: either the whole line is there, or the input is redone (and answered from the
request cache). Lines are written with one ``os.write`` and are in the kernel's hands at once, so
``kill -9`` loses nothing that was written; only a torn last line (power loss, full disk) can be
incomplete, and it is cut off on the next open. Any other unreadable line is an error that names the file
and line, never silently skipped. Final files (``output.jsonl``, ``sft.jsonl``) are written to a temporary
name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

RUN_FORMAT = "condor-run v1"


class RunStoreError(RuntimeError):
    """The run directory is unusable or was made by an incompatible run; the message says how to proceed."""


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing: temp file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_lines(path: Path, lines: Iterator[str]) -> int:
    """Stream lines into a temp file and rename it into place; returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    count = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for line in lines:
                handle.write(line)
                handle.write("\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def dumps(obj: Any) -> str:
    """Compact JSON that can always be written as UTF-8.

    Text with lone surrogates (a model that split an emoji, a hand-made input with a bad escape) cannot
    be encoded as UTF-8; such objects are written with ASCII escapes instead, which JSON readers accept.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text


def record_hash(record: Any) -> str:
    """A fingerprint of a record's content, stored with its unit to notice inputs that changed."""
    blob = json.dumps(record, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode("ascii")).hexdigest()


class StageStore:
    """The shard of one stage. Append units; read back done ids, records and rejections."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.directory = directory
        self.units_path = directory / "units.jsonl"
        self.complete_path = directory / "complete.json"
        self._fd: int | None = None

    # -- reading -------------------------------------------------------------------------------------
    def _repair_tail(self) -> None:
        """Cut a torn last line (no trailing newline) left by a crash mid-write."""
        if not self.units_path.exists():
            return
        size = self.units_path.stat().st_size
        if size == 0:
            return
        with self.units_path.open("rb+") as handle:
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            # Walk back to the last newline; everything after it is an unfinished unit.
            block = 1 << 16
            pos = size
            keep = 0
            while pos > 0:
                start = max(0, pos - block)
                handle.seek(start)
                chunk = handle.read(pos - start)
                idx = chunk.rfind(b"\n")
                if idx >= 0:
                    keep = start + idx + 1
                    break
                pos = start
            handle.truncate(keep)

    def iter_units(self) -> Iterator[dict[str, Any]]:
        """Every unit in file order (superseded ones included); unreadable lines are errors, not skipped."""
        if not self.units_path.exists():
            return
        try:
            with self.units_path.open("r", encoding="utf-8") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.endswith("\n"):
                        return  # torn tail of a crashed writer; cut off on the next append
                    try:
                        unit = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise RunStoreError(
                            f"{self.units_path}:{number}: unreadable unit ({exc.msg}); the file was edited or corrupted"
                        ) from None
                    if not isinstance(unit, dict) or not isinstance(unit.get("input_id"), str):
                        raise RunStoreError(
                            f"{self.units_path}:{number}: not a unit (an object with a string 'input_id'); "
                            "the file was edited or corrupted"
                        )
                    yield unit
        except UnicodeDecodeError:
            raise RunStoreError(f"{self.units_path}: not UTF-8 text; the file was edited or corrupted") from None

    def done_map(self, *, include_failed: bool = True, include_transient: bool = True) -> dict[str, str | None]:
        """``{input_id: input_hash}`` of inputs whose latest unit counts as done.

        Failures can be left out (all of them, or only transport-level ones) so that they are sent again.
        """
        done: dict[str, str | None] = {}
        for unit in self.iter_units():
            failed = bool(unit.get("error"))
            retry = failed and (not include_failed or (unit.get("transient") and not include_transient))
            if retry:
                done.pop(unit["input_id"], None)
            else:
                done[unit["input_id"]] = unit.get("input_hash")
        return done

    def done_ids(self, *, include_failed: bool = True, include_transient: bool = True) -> set[str]:
        return set(self.done_map(include_failed=include_failed, include_transient=include_transient))

    def latest_units(self, current: dict[str, str | None] | None = None) -> Iterator[dict[str, Any]]:
        """The latest unit of each input, in file order.

        With ``current`` (``{input_id: input_hash}`` of the step's inputs as they are now), units of
        inputs that are no longer there, or whose content has changed since, are left out: they belong
        to an earlier state of the upstream step, not to this dataset.
        """
        latest: dict[str, int] = {}
        for unit in self.iter_units():
            latest[unit["input_id"]] = unit.get("seq", 0)
        for unit in self.iter_units():
            input_id = unit["input_id"]
            if latest.get(input_id) != unit.get("seq", 0):
                continue
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
        self.directory.mkdir(parents=True, exist_ok=True)
        self._repair_tail()
        self._seq = sum(1 for _ in self.iter_units())
        self._fd = os.open(self.units_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, unit: dict[str, Any]) -> None:
        if self._fd is None:
            self.open()
        unit["seq"] = self._seq
        self._seq += 1
        data = (dumps(unit) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)  # type: ignore[arg-type]
            view = view[written:]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def is_complete(self) -> bool:
        return self.complete_path.exists()

    def mark_complete(self, summary: dict[str, Any]) -> None:
        atomic_write_text(self.complete_path, json.dumps(summary, indent=2, ensure_ascii=False))

    def clear_complete(self) -> None:
        self.complete_path.unlink(missing_ok=True)


class RunDirectory:
    """A run's output folder and its manifest."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest_path = self.root / "manifest.json"
        if self.root.exists() and not self.root.is_dir():
            raise RunStoreError(f"{self.root} is a file, not a run directory; choose another --output")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunStoreError(f"cannot create the run directory {self.root} ({exc.strerror or exc})") from None
        self.manifest = self._load_manifest()

    def _load_manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            return {"format": RUN_FORMAT, "stages": {}}
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunStoreError(f"{self.manifest_path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except (UnicodeDecodeError, OSError) as exc:
            raise RunStoreError(f"{self.manifest_path}: cannot read ({exc}); use a new output directory") from None
        if not isinstance(data, dict) or data.get("format") != RUN_FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise RunStoreError(
                f"{self.manifest_path}: run format {found!r}, expected {RUN_FORMAT!r}; use a new output directory"
            )
        data.setdefault("stages", {})
        return data

    def save_manifest(self) -> None:
        atomic_write_text(self.manifest_path, json.dumps(self.manifest, indent=2, ensure_ascii=False))

    def bind_inputs(self, kind: str, fingerprint: str) -> None:
        """Refuse to resume a run directory that was started on different inputs."""
        inputs = self.manifest.setdefault("inputs", {})
        previous = inputs.get(kind)
        if previous is not None and previous != fingerprint:
            raise RunStoreError(
                f"{self.root} holds a run over different {kind} (fingerprint {previous[:12]} != {fingerprint[:12]}); "
                "use a new output directory, or delete this one to start over"
            )
        inputs[kind] = fingerprint
        self.save_manifest()

    def stage(self, name: str) -> StageStore:
        return StageStore(self.root / "stages" / name, name)
