"""One writer per run directory: an exclusive, re-entrant, crash-safe lock on ``OUT/.lock``."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from condor.run.store import RunStoreError, refuse_symlink


class RunLock:
    """An exclusive lock on a run directory (``flock`` on ``OUT/.lock``), released when the process ends.

    Two processes writing one run would interleave units and race on the manifest; the second one to
    arrive is refused with the first one's process id instead. The kernel drops the lock when its holder
    dies, so a killed run never leaves a stale lock behind.
    """

    #: Locks this process holds, by path, with how many holders: the lock is re-entrant within a
    #: process (a pipeline that exports holds it once), never shared across processes.
    _held: dict[str, list[int]] = {}

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key = str(path.resolve())
        self._mine = False

    def acquire(self) -> "RunLock":
        held = self._held.get(self._key)
        if held is not None:
            held[1] += 1
            self._mine = True
            return self
        refuse_symlink(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunStoreError(
                f"{self.path.parent} is in use by another condor process (pid {holder}); wait for it to finish, "
                "or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        self._held[self._key] = [fd, 1]
        self._mine = True
        return self

    def release(self) -> None:
        if not self._mine:
            return
        self._mine = False
        held = self._held[self._key]
        held[1] -= 1
        if held[1] == 0:
            del self._held[self._key]
            os.close(held[0])  # closing the descriptor drops the flock

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
