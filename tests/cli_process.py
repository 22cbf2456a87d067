"""Running the real ``condor`` command in a subprocess, with its exit code, output, time and peak memory.

The hostile-input tests use it where an in-process runner cannot tell: whether a command stays within a
memory bound, what it prints to a real stderr (warnings go through logging), what it does with a pipe on
stdin, and under which umask it writes.

Peak memory comes from ``wait4`` in a small go-between process (this module, run as a script): the
kernel counts a child's peak RSS from the moment it is forked, and a child forked straight from the
test process would start out with the test process's own memory (a fake server's 30 MB replies, say).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
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
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "rusage"
        out, err = (open(Path(scratch) / name, "w+b") for name in ("out", "err"))
        with out, err:
            started = time.monotonic()
            proc = subprocess.Popen(
                [sys.executable, __file__, str(report), sys.executable, "-m", "condor.cli.main", *map(str, args)],
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL, stdout=out,
                stderr=out if merge else err, env=environment, umask=-1 if umask is None else umask,
                start_new_session=True,
            )
            if stdin is not None:
                # A real pipe, as in `cat prompts.jsonl | condor generate /dev/stdin`, fed from a thread so
                # that a large input cannot block on a full pipe.
                def feed() -> None:
                    with contextlib.suppress(BrokenPipeError):
                        proc.stdin.write(stdin)
                    proc.stdin.close()

                threading.Thread(target=feed, daemon=True).start()
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AssertionError(f"condor {' '.join(map(str, args))} still running after {timeout}s") from None
            seconds = time.monotonic() - started
            out.seek(0)
            err.seek(0)
            peak_kb = int(report.read_text()) if report.exists() else 0
            return Finished(code, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                            seconds, peak_kb / 1024)


def _measure(report: str, argv: list[str]) -> int:
    """Run ``argv`` as a child of this small process; write its peak RSS (KB) to ``report``."""
    pid = os.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    Path(report).write_text(str(usage.ru_maxrss))
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(_measure(sys.argv[1], sys.argv[2:]))
