"""Helpers of the run directory's files: how units and records are encoded, torn tails, links.

Whole-file writes (temporary file, fsync, rename, one file mode) are :mod:`condor.files`'s, re-exported
here. Appending is the shards' (:mod:`condor.run.store`, one unit per ``write``); a torn last line left
by a crash is cut here (:func:`cut_torn_tail`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from condor.codec import encode_text
from condor.files import atomic_write_lines, atomic_write_text

__all__ = ["RunStoreError", "atomic_write_lines", "atomic_write_text", "cut_torn_tail", "dumps", "record_hash", "refuse_symlink"]


class RunStoreError(RuntimeError):
    """The run directory is unusable or was made by an incompatible run; the message says how to proceed."""


def dumps(obj: Any) -> str:
    """Compact JSON that can always be written as UTF-8.

    Text with lone surrogates (a model that split an emoji, a hand-made input with a bad escape) cannot
    be encoded as UTF-8; such objects are written with ASCII escapes instead, which JSON readers accept.
    """
    return encode_text(obj)


#: Built once: ``json.dumps`` with options builds an encoder per call.
_HASH_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def record_hash(record: Any) -> str:
    """A fingerprint of a record's content, stored with its unit to notice inputs that changed.

    The standard library's exact bytes, not :mod:`condor.codec`'s: runs written earlier must match."""
    return hashlib.sha1(_HASH_ENCODER.encode(record).encode("ascii")).hexdigest()


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
