"""End-to-end `condor generate` throughput against a fast fake server: is the orchestrator ever the bottleneck?

The backend benchmark (bench_openai.py) drives OpenAIBackend alone; this one runs the whole command as a
child process (input parsing, executor window, request cache writes, append-only units, progress
counters, the ordered output file) and compares its rate with the ideal concurrency / latency and with
the backend alone. Prints a markdown table; ``--write`` replaces its section of docs/benchmarks.md.

    .venv/bin/python bench/bench_generate.py --write
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

from bench_memory import ROOT, start_server, update_section

SECTION = "## End-to-end generate throughput"


def run(size: int, concurrency: int, base_url: str, workdir: Path) -> dict:
    prompts = workdir / f"p-{size}-{concurrency}.jsonl"
    with prompts.open("w") as handle:
        for i in range(size):
            handle.write(json.dumps({"id": i, "prompt": f"c{concurrency} item {i}"}) + "\n")
    out = workdir / f"out-{size}-{concurrency}"
    started = time.monotonic()
    before = os.times()
    subprocess.run([sys.executable, "-m", "condor.cli.main", "generate", str(prompts), "-o", str(out), "--base-url",
                    base_url, "--model", "fake-model", "--quiet", "--concurrency", str(concurrency)], check=True,
                   capture_output=True)
    seconds = time.monotonic() - started
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"size": size, "concurrency": concurrency, "seconds": seconds, "cpu_ms": 1000 * cpu / size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario", nargs="+", default=["0.05:64:20000", "0.05:256:20000", "1.0:512:10000"],
        help="latency:concurrency:requests triples",
    )
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for scenario in args.scenario:
            latency, concurrency, size = scenario.split(":")
            server, base_url = start_server(workdir, float(latency))
            try:
                rows.append({**run(int(size), int(concurrency), base_url, workdir), "latency": float(latency)})
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait()
    table = ["| server latency | concurrency | requests | wall s (incl. start-up) | requests/s | ideal | % of ideal | client CPU ms/req |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ideal = row["concurrency"] / row["latency"]
        rate = row["size"] / row["seconds"]
        table.append(f"| {row['latency'] * 1000:.0f} ms | {row['concurrency']} | {row['size']:,} | {row['seconds']:.2f} | "
                     f"{rate:,.0f} | {ideal:,.0f} | {100 * rate / ideal:.0f}% | {row['cpu_ms']:.3f} |")
    text = "\n".join(table)
    print(text)
    if args.write:
        update_section(ROOT / "docs" / "benchmarks.md", SECTION, (
            f"{SECTION}\n\n`condor generate` as a child process (the whole command: start-up, input parsing, executor, "
            f"SQLite request cache, append-only units, ordered `output.jsonl`) against the fake server "
            f"in its own process, on {os.cpu_count()} cores "
            f"({platform.machine()}, Python {platform.python_version()}). Wall time includes interpreter start-up "
            "and the final ordered write, so it understates the steady rate. Rerun:\n\n"
            "    .venv/bin/python bench/bench_generate.py --write\n\n" + text + "\n"))


if __name__ == "__main__":
    main()
