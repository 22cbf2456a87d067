"""Time and peak memory of Condor's readers on hostile and very large inputs, through the real CLI.

Each case runs ``condor ...`` as a child of a small wrapper process and reads the child's own peak RSS
(``wait4``): alias bombs and oversized or deeply nested documents (refused), the largest tag file the
size cap admits (read, then sampled for a run's plan), and servers answering 30 MB per reply (recorded
failures). Prints a markdown table and, with ``--write``, replaces the "Readers" section of
docs/benchmarks.md.

    .venv/bin/python bench/bench_readers.py --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Readers: hostile and very large inputs"
# Runs the command as its own child and prints its exit code, wall time and peak RSS (KB) as JSON.
WRAPPER = (
    "import os, sys, time, json; t = time.monotonic(); pid = os.fork()\n"
    "if pid == 0:\n    os.execv(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(json.dumps({'rc': os.waitstatus_to_exitcode(status), 'seconds': time.monotonic() - t, "
    "'maxrss_kb': usage.ru_maxrss}))"
)


def condor(*args: str | Path) -> dict:
    command = [sys.executable, "-c", WRAPPER, sys.executable, "-m", "condor.cli.main", *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    stats = json.loads(result.stdout.strip().splitlines()[-1])
    stats["said"] = next((line for line in result.stderr.splitlines() if line.startswith("error:")), "")
    return stats


def alias_bomb(levels: int, top: str) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n" + top.replace("BOMB", f"*l{levels - 1}") + "\n"


def tag_file(path: Path, megabytes: int) -> int:
    """A Condor-layout tag file of about ``megabytes`` MB; returns its number of leaves."""
    rng = random.Random(0)
    words = "river stone cloud maple cedar lantern copper meadow harbor canyon".split()
    leaves, size, domains = 0, 0, {}
    while size < megabytes * 1_000_000:
        d = len(domains)
        topics = {f"topic {d}-{t} {rng.choice(words)}": [f"leaf {rng.choice(words)} {d}.{t}.{i}" for i in range(70)]
                  for t in range(500)}
        domains[f"Domain {d} {rng.choice(words)}"] = topics
        leaves += 500 * 70
        size += len(json.dumps(topics))
    path.write_text(json.dumps(domains))
    return leaves


def start_server(workdir: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port_file = workdir / f"port-{len(args)}"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port-file", str(port_file), *args],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])})
    while not port_file.exists():
        if proc.poll() is not None:
            raise SystemExit("fake server failed to start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}/v1"


def cases(work: Path, megabytes: int) -> list[tuple[str, str, dict]]:
    rows = []
    bomb = work / "bomb.yaml"
    bomb.write_text("format: condor-tree v1\n" + alias_bomb(9, "tree: {d: {t: BOMB}}"))
    rows.append((f"tree file, 9 levels of 9 aliases ({bomb.stat().st_size} bytes, 9^9 leaves)", "refused",
                 condor("tree", "stats", "--tree", bomb)))
    config = work / "bomb-config.yaml"
    config.write_text(alias_bomb(9, "llm: {model: BOMB}"))
    rows.append((f"run config, 9 levels of 9 aliases ({config.stat().st_size} bytes)", "refused",
                 condor("run", "-o", work / "o1", "-c", config)))
    deep = work / "deep.yaml"
    deep.write_text("llm: " + "[" * 100_000 + "]" * 100_000 + "\n")
    rows.append(("run config nested 100,000 levels deep", "refused", condor("run", "-o", work / "o2", "-c", deep)))
    big = work / "big.yaml"
    with big.open("wb") as handle:
        handle.truncate(1 << 30)
    rows.append(("run config of 1 GB", "refused", condor("run", "-o", work / "o3", "-c", big)))
    tags = work / "tags.json"
    leaves = tag_file(tags, megabytes)
    size = tags.stat().st_size / 1e6
    rows.append((f"tag file, {size:.0f} MB, {leaves:,} leaves: `tree import`", "read",
                 condor("tree", "import", tags, "-o", work / "tree.json")))
    plan = work / "plan.yaml"
    plan.write_text(f"pipeline: {{tree: {work / 'tree.json'}, leaves: 20, tasks: [view]}}\n")
    rows.append((f"the same tree ({leaves:,} leaves): a run up to its plan", "read, sampled",
                 condor("run", "-o", work / "o4", "-c", plan, "--base-url", "http://127.0.0.1:9/v1", "--model", "m")))
    prompts = work / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n" for i in range(16)))
    flood, url = start_server(work, "--fail-rate", "1", "--fail-kinds", "flood")
    try:
        rows.append(("16 replies streamed endlessly (64 MB each), concurrency 16", "recorded failures",
                     condor("generate", prompts, "-o", work / "o5", "--base-url", url, "--model", "fake-model",
                            "--quiet", "--concurrency", "16")))
    finally:
        flood.send_signal(signal.SIGTERM)
        flood.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=60, help="size of the large tag file")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        rows = cases(Path(tmp), args.megabytes)
    table = ["| input | outcome | exit | seconds | peak RSS (MB) |", "|---|---|---:|---:|---:|"]
    for name, outcome, stats in rows:
        table.append(f"| {name} | {outcome} | {stats['rc']} | {stats['seconds']:.1f} | {stats['maxrss_kb'] / 1024:.0f} |")
    text = "\n".join(table)
    print(text)
    for name, _, stats in rows:
        if stats["said"]:
            print(f"{name}: {stats['said']}")
    if args.write:
        body = (
            f"{SECTION}\n\n"
            "Each row is one `condor` command as a child process; peak RSS is that process's own (`wait4`), "
            "wall time includes Python start-up and imports (about 1 s). Refused inputs end in one line naming "
            f"the file (exit 2). Measured on {os.cpu_count()} cores ({platform.machine()}, Python "
            f"{platform.python_version()}), 1-minute load average {load:.1f} when the run started, "
            f"{time.strftime('%Y-%m-%d')}. The limits themselves are in docs/reliability.md. Rerun:\n\n"
            "    .venv/bin/python bench/bench_readers.py --write\n\n"
            f"{text}\n"
        )
        sys.path.insert(0, str(ROOT / "bench"))
        from bench_memory import update_section

        update_section(ROOT / "docs" / "benchmarks.md", SECTION, body)


if __name__ == "__main__":
    main()
