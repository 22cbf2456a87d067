"""A whole ``condor run`` against the local test server: how close to the ideal request rate, how much memory.

Two measurements, each with its own section of docs/benchmarks.md (``--write`` rewrites only that one):

``--mode speed`` (default). The fake server (tests/fake_server.py) runs as its own process with the
scripted model (tests/condor_responder.py) and heavy-tailed latency: lognormal with sigma 0.75 (the
median is 0.76 of the mean, one answer in a hundred takes 4.4 times the mean). ``condor run`` (100
leaves, 7 tasks, 1 round: about 7,000 requests) runs as a child process at concurrency 128, and so does
``condor generate`` over as many prompts, for comparison, each at a 200 ms mean latency (the issue's
setting) and at 2 s. At 2 s, 128 requests in flight ask only 64 requests per second of the client,
which it serves with CPU to spare even on a shared two-core machine, so those rows show how the steps
are scheduled apart from how fast the client is; at 200 ms they ask 640 per second, and the client's
CPU per request caps the rate. Ideal = concurrency / the mean latency the server actually drew. The
request phase runs from the first request to reach the server to the last answer to leave it; the
whole command adds start-up (imports, the server check, the plan) and the exports. The server also
notes, for each request, the longest prompt prefix it shares with one of the 8 requests that arrived
before it: how many prompt bytes a server's prefix cache could skip, on average, if it kept only those
8 (section "Prefix adjacency").

``--mode memory``. The same command against the server with no latency, on a synthetic tree with
enough leaves that none repeats, for 1,000 and 10,000 leaves of one task (``--tasks domain_qa``: a
10,000-leaf run of all seven tasks is 700,000 requests, hours on this machine), 1 round; peak RSS is
the child's ``ru_maxrss``. The near-duplicate index is the one thing that must grow with the run; its
bytes per kept question are measured in this process with tracemalloc over the questions of the run.

    .venv/bin/python bench/bench_run.py --write                 # speed and prefix adjacency
    .venv/bin/python bench/bench_run.py --mode memory --write   # peak RSS
    .venv/bin/python bench/bench_run.py --compare /older/checkout/src --write   # before and after

The child processes run whatever ``condor`` is first on PYTHONPATH; ``--compare SRC`` runs every
measurement again with ``PYTHONPATH=SRC``, an older checkout, so one table holds both.
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

ROOT = Path(__file__).resolve().parents[1]
SPEED = "## Whole-run throughput (streaming between steps)"
PREFIX = "## Prefix adjacency"
MEMORY = "## Whole-run memory: 1,000 versus 10,000 leaves"
#: Shared prompt starts of at least these many bytes (UTF-8), counted in the adjacency table: 200 is about
#: a step's system prompt, 600 goes into the critique and refinement templates, 1,000 into a long one.
PREFIX_BYTES = (200, 600, 1000)


def start_server(workdir: Path, latency: float, sigma: float) -> tuple[subprocess.Popen, str]:
    port_file = workdir / "port"
    port_file.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port-file", str(port_file), "--latency",
         str(latency), "--latency-sigma", str(sigma), "--responder", "condor_responder:respond"], env=env)
    deadline = time.monotonic() + 30
    while not port_file.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the fake server did not start")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port_file.read_text()}"


def server_stats(root: str) -> dict:
    with urllib.request.urlopen(f"{root}/_fake/stats?prefix=1", timeout=60) as response:
        return json.loads(response.read())


def timed(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Run ``cmd`` in a wrapper process so that RUSAGE_CHILDREN covers this one command."""
    wrapper = (
        "import resource, subprocess, sys, time, json;"
        "t=time.monotonic();"
        "r=subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "u=resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(json.dumps({'rc': r.returncode, 'maxrss_kb': u.ru_maxrss, 'seconds': time.monotonic()-t,"
        " 'cpu': u.ru_utime+u.ru_stime, 'stderr': r.stderr[-3000:]}))"
    )
    done = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True, check=True, env=env)
    stats = json.loads(done.stdout.strip().splitlines()[-1])
    if stats["rc"] != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{stats['stderr']}")
    return stats


def condor(*args: str) -> list[str]:
    return [sys.executable, "-m", "condor.cli.main", *args]


def measure(workdir: Path, name: str, latency: float, sigma: float, command, code: tuple[str, str | None]) -> dict:
    """Start a fresh server, run ``command(base_url)`` with the condor of ``code`` (label, source
    directory or None for this one), return the command's and the server's numbers."""
    label, source = code
    env = {**os.environ, "PYTHONPATH": source} if source else None
    server, root = start_server(workdir, latency, sigma)
    try:
        run = timed(command(f"{root}/v1"), env)
        stats = server_stats(root)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()
    phase = (stats["last_answer_at"] or 0) - (stats["first_request_at"] or 0)
    return {"name": name, "code": label, "latency": latency, **run, "requests": stats["requests"], "phase": phase,
            "latency_mean": stats["latency_mean"] or latency, "shared_prefix": stats["shared_prefix"] or [],
            "prompt_bytes": stats["prompt_bytes"] or []}


def config_file(workdir: Path, relevance: str) -> Path:
    path = workdir / "bench.yaml"
    path.write_text(f"pipeline:\n  relevance: {relevance}\n", encoding="utf-8")
    return path


def versions(args: argparse.Namespace) -> list[tuple[str, str | None]]:
    """The code measured: this checkout, and the one named by ``--compare`` (a ``src`` directory)."""
    return [(args.label, None)] + ([(args.compare_label, args.compare)] if args.compare else [])


def speed(args: argparse.Namespace, workdir: Path) -> list[dict]:
    rows = []
    common = ["--model", "fake-model", "--concurrency", str(args.concurrency), "--quiet"]
    config = config_file(workdir, args.relevance)
    for latency in args.latencies:
        for code in versions(args):
            for attempt in range(args.repeat):
                out = workdir / f"run-{len(rows)}"
                rows.append(measure(workdir, "condor run", latency, args.sigma, lambda url: condor(
                    "run", "-o", str(out), "-c", str(config), "--leaves", str(args.leaves), "--rounds", str(args.rounds),
                    *(["--tasks", args.tasks] if args.tasks else []), "--base-url", url, *common), code))
            count = rows[-1]["requests"]
            if args.generate:
                prompts = workdir / "prompts.jsonl"
                with prompts.open("w", encoding="utf-8") as handle:
                    for i in range(count):
                        handle.write(json.dumps({"id": f"p{i}", "prompt": f"Answer question number {i} helpfully."}) + "\n")
                out = workdir / f"generate-{len(rows)}"
                rows.append(measure(workdir, "condor generate", latency, args.sigma, lambda url: condor(
                    "generate", str(prompts), "-o", str(out), "--base-url", url, *common), code))
            if args.templated and latency == args.latencies[0]:
                prompts = templated_prompts(workdir / "templated.jsonl", count)
                out = workdir / f"templated-{len(rows)}"
                rows.append(measure(workdir, "condor generate, 20 templates", latency, args.sigma, lambda url: condor(
                    "generate", str(prompts), "-o", str(out), "--base-url", url, *common), code))
    return rows


def templated_prompts(path: Path, count: int) -> Path:
    """``count`` prompts made from 20 long templates (about 1.5 KB each) and shuffled: batch generation
    from a few instructions, where prompts of one template share all but their last line."""
    import random

    rng = random.Random(7)
    words = "apple river quiet lantern copper meadow violin orbit granite harbor pepper canyon ticket".split()
    templates = [f"Instructions, set {t}: " + " ".join(rng.choice(words) for _ in range(220)) for t in range(20)]
    prompts = [f"{templates[i % 20]}\nItem {i}: write one line about it." for i in range(count)]
    rng.shuffle(prompts)
    with path.open("w", encoding="utf-8") as handle:
        for i, prompt in enumerate(prompts):
            handle.write(json.dumps({"id": f"t{i}", "prompt": prompt}) + "\n")
    return path


def speed_table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = ["| server latency (mean) | code | command | requests | request phase s | whole command s | mean latency drawn ms | "
             "ideal req/s | req/s (phase) | % of ideal (phase) | % of ideal (whole command) | client CPU ms/req | "
             "peak RSS MiB |",
             "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        ideal = args.concurrency / row["latency_mean"]
        rate = row["requests"] / row["phase"]
        whole = row["requests"] / row["seconds"]
        lines.append(f"| {1000 * row['latency']:,.0f} ms | {row['code']} | {row['name']} | {row['requests']:,} | "
                     f"{row['phase']:.2f} | {row['seconds']:.2f} | "
                     f"{1000 * row['latency_mean']:.0f} | {ideal:,.0f} | {rate:,.0f} | {100 * rate / ideal:.1f}% | "
                     f"{100 * whole / ideal:.1f}% | {1000 * row['cpu'] / row['requests']:.2f} | {row['maxrss_kb'] / 1024:.0f} |")
    return "\n".join(lines)


def prefix_table(rows: list[dict], args: argparse.Namespace) -> str:
    head = " | ".join(f"shares >= {n:,} bytes" for n in PREFIX_BYTES)
    lines = [f"| code | command | requests | mean bytes shared | mean share of the prompt | {head} |",
             "|---|---|---:|---:|---:|" + "---:|" * len(PREFIX_BYTES)]
    for row in rows:
        shared, sizes = row["shared_prefix"], row["prompt_bytes"]
        if not shared or row["latency"] != args.latencies[0]:
            continue
        shares = " | ".join(f"{100 * sum(1 for s in shared if s >= n) / len(shared):.1f}%" for n in PREFIX_BYTES)
        fraction = sum(s / max(1, size) for s, size in zip(shared, sizes)) / len(shared)
        lines.append(f"| {row['code']} | {row['name']} | {len(shared):,} | {sum(shared) / len(shared):,.0f} | "
                     f"{100 * fraction:.1f}% | {shares} |")
    return "\n".join(lines)


def synthetic_tree(path: Path, leaves: int) -> None:
    """A tree with ``leaves`` distinct leaves (20 domains x 25 topics x n), so that no leaf repeats."""
    per_topic = -(-leaves // 500)
    lines = ["format: condor-tree v1", "name: bench", "language: en", "version: 1", "tree:"]
    for d in range(20):
        lines.append(f"  Domain {d} of everyday life:")
        for t in range(25):
            lines.append(f"    Topic {t} within domain {d}:")
            lines.extend(f"      - Subject {d}.{t}.{leaf} in practice" for leaf in range(per_topic))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def memory(args: argparse.Namespace, workdir: Path) -> list[dict]:
    tree = workdir / "tree.yaml"
    synthetic_tree(tree, max(args.sizes + args.compare_sizes))
    config = config_file(workdir, args.relevance)
    rows = []
    for code, sizes in zip(versions(args), (args.sizes, args.compare_sizes)):
        for size in sizes:
            out = workdir / f"mem-{len(rows)}"
            row = measure(workdir, f"{size:,} leaves", 0.0, 0.0, lambda url: condor(
                "run", "-o", str(out), "-c", str(config), "--tree", str(tree), "--leaves", str(size), "--rounds",
                str(args.rounds), "--tasks", args.tasks or "domain_qa", "--base-url", url, "--model", "fake-model",
                "--concurrency", str(args.concurrency), "--quiet"), code)
            row["index"] = dedup_index_bytes(out)
            rows.append(row)
    return rows


def dedup_index_bytes(run: Path) -> dict:
    """Bytes the near-duplicate index holds after taking the run's questions, measured with tracemalloc."""
    import tracemalloc

    from condor.filters.dedup import Deduplicator
    from condor.run.records import read_run

    questions = [(r["id"], r["question"]) for r in read_run(run).records("questions")]
    questions.sort()
    tracemalloc.start()
    detector = Deduplicator(threshold=0.8)
    before = tracemalloc.get_traced_memory()[0]
    kept = sum(1 for key, text in questions if detector.check(key, text) is None)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return {"questions": len(questions), "kept": kept, "bytes": used}


def memory_table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = ["| code | run | requests | seconds | peak RSS MiB | questions kept by dedup | dedup index MiB | "
             "bytes per kept question | peak RSS less the index MiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        index = row["index"]
        rss = row["maxrss_kb"] / 1024
        lines.append(f"| {row['code']} | {row['name']} | {row['requests']:,} | {row['seconds']:.1f} | {rss:.1f} | "
                     f"{index['kept']:,} | {index['bytes'] / 2**20:.1f} | {index['bytes'] / max(1, index['kept']):,.0f} | "
                     f"{rss - index['bytes'] / 2**20:.1f} |")
    lines.append("")
    for code in dict.fromkeys(row["code"] for row in rows):
        mine = [row for row in rows if row["code"] == code]
        if len(mine) >= 2:
            small, large = mine[0], mine[-1]
            less = [r["maxrss_kb"] / 1024 - r["index"]["bytes"] / 2**20 for r in (small, large)]
            lines.append(f"- {code}: peak RSS less the index, {large['name']} over {small['name']}: "
                         f"{less[1] / less[0]:.2f}x; peak RSS {large['maxrss_kb'] / small['maxrss_kb']:.2f}x.")
    return "\n".join(lines)


def machine() -> str:
    load = os.getloadavg()[0]
    return (f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, 1-minute load "
            f"average {load:.1f} at the start (the machine is shared), measured {time.strftime('%Y-%m-%d')}")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("speed", "memory"), default="speed")
    parser.add_argument("--leaves", type=int, default=100)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="memory mode: leaves per run")
    parser.add_argument("--tasks", default=None, help="comma-separated task types (default: all seven; memory: domain_qa)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=128)
    parser.add_argument("--latencies", type=float, nargs="+", default=[0.2, 2.0],
                        help="mean server latencies in seconds; a slow server shows scheduling apart from client CPU")
    parser.add_argument("--sigma", type=float, default=0.75)
    parser.add_argument("--relevance", default="lexical", help="pipeline.relevance for the run (auto loads MiniLM)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--no-generate", dest="generate", action="store_false")
    parser.add_argument("--no-templated", dest="templated", action="store_false",
                        help="leave out generate over shuffled prompts of 20 long templates (prefix adjacency)")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--compare", help="also measure the condor in this src directory (e.g. an older checkout)")
    parser.add_argument("--compare-label", default="before")
    parser.add_argument("--compare-sizes", type=int, nargs="+", default=[1000, 3000],
                        help="memory mode: leaves per run for the --compare code")
    parser.add_argument("--write", action="store_true", help="rewrite this mode's sections of docs/benchmarks.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        started = machine()
        if args.mode == "speed":
            rows = speed(args, workdir)
            tables = {SPEED: speed_table(rows, args), PREFIX: prefix_table(rows, args)}
        else:
            rows = memory(args, workdir)
            tables = {MEMORY: memory_table(rows, args)}
    for heading, table in tables.items():
        print(f"{heading}\n\n{table}\n")
    if args.write:
        docs = ROOT / "docs" / "benchmarks.md"
        for heading, table in tables.items():
            update_section(docs, heading, f"{heading}\n\n{describe(heading, args, started)}\n\n{table}\n")


def describe(heading: str, args: argparse.Namespace, started: str) -> str:
    if heading == SPEED:
        return (f"`condor run` ({args.leaves} leaves, {args.tasks or 'all seven'} tasks, {args.rounds} round, "
                f"relevance {args.relevance}) and `condor generate` over as many prompts, as child processes "
                f"against the fake server in its own process: concurrency {args.concurrency}, lognormal latency "
                f"with the mean shown and sigma {args.sigma}. Ideal = concurrency / the mean latency drawn; the "
                f"request phase runs from the first request in to the last answer out. {started}. Rerun "
                f"(`--compare` names the `src` of the code to compare with):\n\n"
                "    .venv/bin/python bench/bench_run.py --compare /path/to/older/checkout/src --write")
    if heading == PREFIX:
        return ("For each request reaching the fake server in the runs above, the longest prompt prefix it "
                "shares with one of the 8 requests that arrived before it (messages joined as `role: content`, "
                "UTF-8 bytes): on average, and as a share of the prompt, the start a prefix cache that kept only "
                "those 8 prompts could skip; and the share of requests sharing at least 200 bytes (about a step's "
                "system prompt), 600 (into the critique and refinement templates) or 1,000. The last row is "
                "`condor generate` over as many prompts made from 20 long templates (about 1.5 KB each) and "
                "shuffled. Rerun with the speed mode.")
    return (f"`condor run` ({args.tasks or 'domain_qa'}, {args.rounds} round, relevance {args.relevance}) on a "
            f"synthetic tree with no repeated leaf, against the fake server with no latency, concurrency "
            f"{args.concurrency}; peak RSS is the child's `ru_maxrss`. The dedup index is measured with tracemalloc "
            f"over the run's questions in id order. {started}. Rerun:\n\n"
            "    .venv/bin/python bench/bench_run.py --mode memory --compare /path/to/older/checkout/src --write")


if __name__ == "__main__":
    main()
