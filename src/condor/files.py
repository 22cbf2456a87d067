"""Writing files: whole or nothing, and with one mode for all of them, the umask's.

A file is written to a temporary name beside it, flushed and renamed into place, so a reader (or a
killed process) never sees half of one. Modes would otherwise differ by how a file was made: renamed
temporary files come out 0600 (``mkstemp``), appended shards and the lock 0644, SQLite's cache 0644
whatever the umask says. A run directory is shared as a whole (copied to a team's storage, read by a
training job under another user), so every file gets what the umask allows an ordinary new file: 0644
under the usual 022, 0600 under 077.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

_MODE: list[int] = []


def file_mode() -> int:
    """``0o666`` less the process's umask (read once; the umask is process-wide and set at start-up)."""
    if not _MODE:
        mask = os.umask(0o022)
        os.umask(mask)
        _MODE.append(0o666 & ~mask)
    return _MODE[0]


def atomic_write_text(path: Path, text: str) -> None:
    """Write a whole file or nothing: temp file in the same directory, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, file_mode())
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
        os.fchmod(fd, file_mode())
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
