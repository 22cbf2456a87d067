"""Files of a run directory written whole or not at all, and how units and records are encoded.

A temporary file in the same directory, flushed and fsynced, then renamed over the target: a reader
(or a process killed mid-write) sees the old file or the new one, never half of one. What it leaves
out: appending (the shards of :mod:`condor.run.store` do that, one unit per ``write``; a torn last line
left by a crash is cut here, :func:`cut_torn_tail`).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["RunStoreError", "atomic_write_lines", "atomic_write_text", "cut_torn_tail", "dumps", "record_hash", "refuse_symlink"]


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


def cut_torn_tail(path: Path) -> None:
    """Cut a torn last line (no trailing newline) off an append-only file, left by a crash mid-write."""
    if not path.exists():
        return
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Walk back to the last newline; everything after it is an unfinished line.
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


def refuse_symlink(path: Path) -> None:
    # Writing through a link would put run data wherever the link points, outside the run directory.
    if path.is_symlink():
        raise RunStoreError(f"{path} is a symbolic link; Condor writes only real files inside the run directory")
