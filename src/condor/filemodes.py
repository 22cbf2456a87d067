"""The permissions of the files Condor writes: one rule for all of them, the umask's.

Left to themselves they differ: files written through a temporary name and a rename come out 0600
(``mkstemp``), appended shards and the lock 0644, SQLite's cache 0644 whatever the umask says. A run
directory is shared as a whole (copied to a team's storage, read by a training job under another user),
so every file gets what the umask allows an ordinary new file: 0644 under the usual 022, 0600 under 077.
"""

from __future__ import annotations

import os

_MODE: list[int] = []


def file_mode() -> int:
    """``0o666`` less the process's umask (read once; the umask is process-wide and set at start-up)."""
    if not _MODE:
        mask = os.umask(0o022)
        os.umask(mask)
        _MODE.append(0o666 & ~mask)
    return _MODE[0]
