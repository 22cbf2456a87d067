"""Local versus Ray executor: a whole `condor run` against the fake server, same work, both executors.

Each run is `condor run` as a child process (`--executor local`, then `--executor ray` on a local Ray the
command starts) over the same plan, against the fake server in its own process answering with the
scripted Condor responder after a fixed latency. Reports wall time, model requests (counted by the
server), requests per second and the share of the ideal rate (concurrency / latency), and for Ray the
fixed cost of starting Ray and one actor pool per model step. Prints a markdown table; ``--write``
replaces its section of docs/benchmarks.md.

    .venv/bin/python bench/bench_ray.py --write
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
import urllib.request
from pathlib import Path

from bench_memory import ROOT, update_section

SECTION = "## Local versus Ray executor"


def start_server(workdir: Path, latency: float) -> tuple[subprocess.Popen, str]:
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port-file", str(port_file), "--latency",
         str(latency), "--responder", "condor_responder:respond"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
    )
    while not port_file.exists():
        if proc.poll() is not None:
            raise SystemExit("fake server failed to start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def served(server: str) -> int:
    with urllib.request.urlopen(f"{server}/_fake/stats") as reply:
        return json.load(reply)["requests"]


def run(executor: str, leaves: int, concurrency: int, server: str, workdir: Path) -> dict:
    config = workdir / "bench.yaml"
    # Lexical relevance: the benchmark measures the executors, not the sentence-embedding model.
    config.write_text("pipeline: {relevance: lexical}\n")
    out = workdir / f"out-{executor}-{leaves}-{concurrency}"
    before = served(server)
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "condor.cli.main", "run", "-o", str(out), "--config", str(config),
                    "--leaves", str(leaves), "--rounds", "1", "--base-url", f"{server}/v1", "--model", "fake-model",
                    "--concurrency", str(concurrency), "--executor", executor, "--quiet"],
                   check=True, capture_output=True)
    seconds = time.monotonic() - started
    rows = sum(1 for _ in (out / "sft.jsonl").open())
    return {"executor": executor, "seconds": seconds, "requests": served(server) - before, "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", nargs="+", default=["0.2:128:100", "0.2:128:300"],
                        help="latency:concurrency:leaves triples")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for scenario in args.scenario:
            latency, concurrency, leaves = scenario.split(":")
            proc, server = start_server(workdir, float(latency))
            try:
                for executor in ("local", "ray"):
                    result = run(executor, int(leaves), int(concurrency), server, workdir)
                    rows.append({**result, "latency": float(latency), "concurrency": int(concurrency),
                                 "leaves": int(leaves)})
                    print(rows[-1], file=sys.stderr)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait()
    table = ["| latency | concurrency | leaves | executor | requests | dataset rows | wall s | requests/s | % of ideal |",
             "|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for row in rows:
        ideal = row["concurrency"] / row["latency"]
        rate = row["requests"] / row["seconds"]
        table.append(f"| {row['latency'] * 1000:.0f} ms | {row['concurrency']} | {row['leaves']} | {row['executor']} | "
                     f"{row['requests']:,} | {row['rows']:,} | {row['seconds']:.1f} | {rate:,.0f} | "
                     f"{100 * rate / ideal:.0f}% |")
    text = "\n".join(table)
    print(text)
    if args.write:
        update_section(ROOT / "docs" / "benchmarks.md", SECTION, (
            f"{SECTION}\n\nA whole `condor run` (7 tasks, 1 round) as a child process with `--executor local` and with "
            f"`--executor ray` (a local Ray the command starts), against the fake server in its own process with the "
            f"scripted Condor responder, on {os.cpu_count()} cores ({platform.machine()}, Python "
            f"{platform.python_version()}). Requests are counted by the server; wall time includes start-up (for Ray: "
            "starting Ray, and one actor pool per model step). Ideal = concurrency / latency. Rerun:\n\n"
            "    .venv/bin/python bench/bench_ray.py --write\n\n" + text + "\n"
        ))


if __name__ == "__main__":
    main()
