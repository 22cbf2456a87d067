"""Running the real ``condor`` command in a subprocess, with its exit code, output, time and peak memory.

The hostile-input tests use it where an in-process runner cannot tell: whether a command stays within a
memory bound (the child's own peak RSS, from ``wait4``), what it prints to a real stderr (warnings go
through logging), what it does with a pipe on stdin, and under which umask it writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Finished:
    code: int
    stdout: str
    stderr: str
    seconds: float
    #: Peak resident memory of the command's own process, in MB.
    peak_mb: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def condor(*args: str | Path, stdin: bytes | None = None, umask: int | None = None, timeout: float = 300,
           env: dict[str, str] | None = None, merge: bool = False) -> Finished:
    """``condor ARGS`` as its own process; a command still running after ``timeout`` seconds fails the test.

    ``merge`` sends stderr into stdout, in the order things were printed.
    """
    environment = {**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1", **(env or {})}

    def prepare() -> None:
        if umask is not None:
            os.umask(umask)

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as given:
        if stdin is not None:
            given.write(stdin)
            given.seek(0)
        started = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "condor.cli.main", *map(str, args)],
            stdin=given if stdin is not None else subprocess.DEVNULL, stdout=out, stderr=out if merge else err,
            env=environment, preexec_fn=prepare,
        )
        # wait4 rather than Popen.wait: it gives this child's own resource usage (peak RSS).
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - started > timeout:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise AssertionError(f"condor {' '.join(map(str, args))} still running after {timeout}s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Finished(proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                        seconds, usage.ru_maxrss / 1024)
