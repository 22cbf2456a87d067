"""Many servers as one backend: throughput over replicas, a slow replica, and a replica that dies mid-run.

Each replica is tests/fake_server.py in its own process with a fixed latency. With ``concurrency`` C per
replica and latencies L_i, a perfect client completes sum(C / L_i) requests per second; this reports
how close :class:`~condor.llm.replicas.ReplicaBackend` comes, how the requests were spread (from the
servers' own counts), and what round robin would have reached with the same servers (each replica
given an equal share, so the run lasts as long as the slowest replica's share). Results go to the
section "## Replicas" of docs/benchmarks.md.

    .venv/bin/python bench/bench_replicas.py            # measure, print, update docs/benchmarks.md
    .venv/bin/python bench/bench_replicas.py --no-write # measure and print only
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench_memory import update_section
from bench_openai import ROOT, ServerProcess, machine, requests_for

from condor.llm.openai import OpenAIBackend
from condor.llm.replicas import ReplicaBackend

SECTION = "## Replicas"


@dataclass
class Scenario:
    name: str
    latencies: tuple[float, ...]
    kill_after: float | None = None  # kill the last replica once this share of requests is done


@dataclass
class Result:
    scenario: Scenario
    requests: int
    seconds: float
    counts: list[int]
    failures: int
    ideal: float
    round_robin: float


async def run(scenario: Scenario, count: int, concurrency: int) -> Result:
    servers = [ServerProcess(latency, 0.0).__enter__() for latency in scenario.latencies]
    try:
        backends = [OpenAIBackend(s.base_url, "fake-model", concurrency=concurrency, timeout=30.0, max_retries=1,
                                  backoff_base=0.05) for s in servers]
        backend = backends[0] if len(backends) == 1 else ReplicaBackend(backends, cooldown=30.0, backoff_base=0.05)
        async with backend:
            await backend.check()
            await backend.generate(requests_for(concurrency * len(servers) * 2, 10_000_000))  # warm-up
            before = [s.stats()["requests"] for s in servers]
            started = time.perf_counter()
            job = asyncio.ensure_future(backend.generate(requests_for(count, 0)))
            killed: int | None = None
            if scenario.kill_after is not None:
                while sum(s.stats()["requests"] for s in servers) - sum(before) < count * scenario.kill_after:
                    await asyncio.sleep(0.05)
                killed = servers[-1].stats()["requests"] - before[-1]  # received before it died
                servers[-1].process.kill()
            completions = await job
            seconds = time.perf_counter() - started
        alive = servers if killed is None else servers[:-1]
        counts = [s.stats()["requests"] - b for s, b in zip(alive, before)] + ([] if killed is None else [killed])
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.__exit__(None, None, None)
    rates = [concurrency / latency for latency in scenario.latencies]
    # Round robin gives each replica count / n requests: the slowest share decides the duration.
    round_robin = count / max((count / len(rates)) / rate for rate in rates)
    return Result(scenario, count, seconds, counts, sum(not c.ok for c in completions), sum(rates), round_robin)


def table(results: list[Result]) -> str:
    lines = [
        "| scenario | replica latencies (ms) | requests | seconds | requests/s | ideal | % of ideal "
        "| round robin would reach | requests per replica | failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        latencies = ", ".join(f"{1000 * latency:.0f}" for latency in r.scenario.latencies)
        rate = r.requests / r.seconds
        lines.append(
            f"| {r.scenario.name} | {latencies} | {r.requests} | {r.seconds:.2f} | {rate:,.0f} | {r.ideal:,.0f} "
            f"| {100 * rate / r.ideal:.0f}% | {r.round_robin:,.0f} | {' / '.join(map(str, r.counts))} | {r.failures} |"
        )
    return "\n".join(lines)


def findings(results: list[Result]) -> str:
    """What the table says, computed from it so that a rerun keeps the text true."""
    lines = []
    for r in results:
        rate = r.requests / r.seconds
        if r.scenario.kill_after is not None:
            k = r.scenario.kill_after
            survivors = r.ideal * (len(r.scenario.latencies) - 1) / len(r.scenario.latencies)
            best = r.requests / (r.requests * k / r.ideal + r.requests * (1 - k) / survivors)
            lines.append(f"- {r.scenario.name}: with the replica gone after {k:.0%} of the requests, the best any "
                         f"client could do is {best:,.0f} requests/s; this run reached {rate:,.0f} ({rate / best:.0%}), "
                         f"with {r.failures} failed requests.")
        elif len(set(r.scenario.latencies)) > 1:
            slow = r.counts[-1] / sum(r.counts)
            lines.append(f"- {r.scenario.name}: the slow replica got {slow:.0%} of the requests; the run reached "
                         f"{rate / r.ideal:.0%} of ideal, where round robin would reach {r.round_robin / r.ideal:.0%}.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2400)
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight per replica")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per answer of a normal replica")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    lat = args.latency
    scenarios = [
        Scenario("one server", (lat,)),
        Scenario("three replicas", (lat, lat, lat)),
        Scenario("one replica 5x slower", (lat, lat, 5 * lat)),
        Scenario("one replica killed a third of the way", (lat, lat, lat), kill_after=1 / 3),
    ]
    load_before = os.getloadavg()[0]
    results = [asyncio.run(run(s, args.requests, args.concurrency)) for s in scenarios]
    report = table(results) + "\n\n" + findings(results)
    print(report)
    if not args.no_write:
        notes = (
            "`.venv/bin/python bench/bench_replicas.py` starts one `tests/fake_server.py` process per replica, each "
            f"with a fixed latency, and sends {args.requests} chat requests in one batch through "
            f"`ReplicaBackend.generate` ({args.concurrency} in flight per replica; the one-server row uses "
            "`OpenAIBackend` alone), after a warm-up. Ideal = sum over replicas of concurrency / latency. "
            "\"Round robin would reach\" is computed, not run: every replica gets the same share, so the slowest "
            "share sets the duration. Requests per replica are the servers' own counts (the killed replica's "
            "count is what it answered before it died).\n\n"
            f"Machine: {machine()}; 1-minute load average {load_before:.1f} when the run started (the box is "
            f"shared); measured {time.strftime('%Y-%m-%d')}.\n\n"
        )
        update_section(args.docs, SECTION, f"{SECTION}\n\n{notes}{report}\n\n")
        print(f"\nupdated {args.docs}")


if __name__ == "__main__":
    main()
