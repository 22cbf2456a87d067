"""Peak client memory of ``condor generate`` for 10k versus 100k prompts: it must stay flat.

Starts the fake OpenAI-compatible server (tests/fake_server.py) as its own process with no latency,
runs ``condor generate`` as a child process over N generated prompts, and reads the child's peak RSS
(``ru_maxrss`` of RUSAGE_CHILDREN, measured per run in a fresh wrapper process). Prints a markdown table
and, with ``--write``, replaces the "Memory" section of docs/benchmarks.md.

    .venv/bin/python bench/bench_memory.py --sizes 10000 100000 --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Memory: 10k versus 100k prompts"


def start_server(workdir: Path, latency: float = 0.0) -> tuple[subprocess.Popen, str]:
    """The fake server as its own process; returns it and its base URL once it listens."""
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port-file", str(port_file),
                             "--latency", str(latency)])
    while not port_file.exists():
        if proc.poll() is not None:
            raise SystemExit("fake server failed to start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}/v1"


def measure(size: int, base_url: str, workdir: Path, concurrency: int) -> dict:
    prompts = workdir / f"prompts-{size}.jsonl"
    with prompts.open("w") as handle:
        for i in range(size):
            handle.write(json.dumps({"id": f"p{i}", "prompt": f"Write one line about item number {i}."}) + "\n")
    out = workdir / f"out-{size}"
    # A wrapper process so that RUSAGE_CHILDREN covers this one run only.
    wrapper = (
        "import resource, subprocess, sys, time, json;"
        "t=time.monotonic();"
        "r=subprocess.run(sys.argv[1:]);"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc': r.returncode, 'maxrss_kb': u.ru_maxrss, 'seconds': time.monotonic()-t,"
        " 'cpu': u.ru_utime+u.ru_stime}))"
    )
    cmd = [sys.executable, "-c", wrapper, sys.executable, "-m", "condor.cli.main", "generate", str(prompts),
           "-o", str(out), "--base-url", base_url, "--model", "fake-model", "--quiet",
           "--concurrency", str(concurrency)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    if stats["rc"] != 0:
        raise SystemExit(f"condor generate failed for {size}: {result.stderr[-2000:]}")
    lines = sum(1 for _ in (out / "output.jsonl").open())
    assert lines == size, (lines, size)
    return {"size": size, **stats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server, base_url = start_server(workdir)
        try:
            rows = [measure(size, base_url, workdir, args.concurrency) for size in args.sizes]
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()
    table = ["| prompts | peak RSS (MiB) | wall time (s) | client CPU (s) | requests/s |", "|---:|---:|---:|---:|---:|"]
    for row in rows:
        table.append(
            f"| {row['size']:,} | {row['maxrss_kb'] / 1024:.1f} | {row['seconds']:.1f} | {row['cpu']:.1f} | "
            f"{row['size'] / row['seconds']:.0f} |"
        )
    text = "\n".join(table)
    print(text)
    if args.write:
        body = (
            f"{SECTION}\n\n"
            "`condor generate` as a child process against the fake server (its own process, no latency), "
            f"concurrency {args.concurrency}, on {os.cpu_count()} cores ({platform.machine()}, Python "
            f"{platform.python_version()}). Peak RSS is the client's `ru_maxrss`; the whole run includes "
            "writing `output.jsonl` in input order. Rerun:\n\n"
            "    .venv/bin/python bench/bench_memory.py --write\n\n"
            f"{text}\n"
        )
        update_section(ROOT / "docs" / "benchmarks.md", SECTION, body)


def update_section(path: Path, heading: str, body: str) -> None:
    """Replace the section starting at ``heading`` (up to the next '## ') or append it."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(heading))
        # One blank line before the next section, however the body ends.
        text = text[:start] + body.rstrip("\n") + "\n" + ("\n" + text[end + 1:] if end >= 0 else "")
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
