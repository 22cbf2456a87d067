"""Tokens per second of the embedded backend (SmolLM2-135M through llama.cpp), plain and with a schema.

Runs a few fixed generations through ``EmbeddedBackend.generate`` on this machine and reports completion
tokens per second of wall time: plain, with the schema held by llguidance (the default), and with
llama.cpp's own grammar (the fallback without llguidance). ``--write`` replaces its section of
docs/benchmarks.md.

    .venv/bin/python bench/bench_embedded.py --write
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time

from bench_memory import ROOT, update_section

from condor.llm import embedded
from condor.llm.base import ChatRequest
from condor.llm.embedded import EmbeddedBackend

SECTION = "## Embedded model speed"
SCHEMA = {
    "type": "object",
    "properties": {"easy": {"type": "string"}, "medium": {"type": "string"}, "hard": {"type": "string"}},
    "required": ["easy", "medium", "hard"],
}
PROMPTS = [
    "Explain how a sourdough starter works.",
    "Give advice to someone negotiating their first salary.",
    "Describe the water cycle to a ten-year-old.",
]


async def measure(schema: bool, max_tokens: int, repeats: int) -> tuple[int, float]:
    backend = EmbeddedBackend(max_tokens=max_tokens, temperature=0.7, seed=3)
    await backend.warm_up()
    requests = [
        ChatRequest(messages=[{"role": "user", "content": p}], json_schema=SCHEMA if schema else None, sample_index=i)
        for i in range(repeats)
        for p in PROMPTS
    ]
    started = time.monotonic()
    completions = await backend.generate(requests)
    seconds = time.monotonic() - started
    await backend.aclose()
    return sum(c.completion_tokens for c in completions), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    rows = []
    for label, schema in (("plain", False), ("JSON schema (llguidance)", True)):
        tokens, seconds = asyncio.run(measure(schema, args.max_tokens, args.repeats))
        rows.append((label, tokens, seconds))
    embedded.guide_tokenizer = lambda llama: None  # the fallback: llama.cpp's grammar over the whole vocabulary
    tokens, seconds = asyncio.run(measure(True, args.max_tokens, args.repeats))
    rows.append(("JSON schema (llama.cpp grammar)", tokens, seconds))
    table = ["| output | generations | completion tokens | seconds | tokens/s |", "|---|---:|---:|---:|---:|"]
    for label, tokens, seconds in rows:
        table.append(f"| {label} | {len(PROMPTS) * args.repeats} | {tokens} | {seconds:.1f} | {tokens / seconds:.0f} |")
    text = "\n".join(table)
    print(text)
    if args.write:
        update_section(ROOT / "docs" / "benchmarks.md", SECTION, (
            f"{SECTION}\n\n`EmbeddedBackend` (SmolLM2-135M-Instruct Q4_1, llama-cpp-python built by the Makefile with "
            f"GGML_NATIVE=OFF and AVX2) on {os.cpu_count()} cores ({platform.machine()}), one generation at a time, "
            f"max_tokens {args.max_tokens}, nothing else running. With two llama.cpp processes on these two cores, "
            "OpenMP threads spin against each other and each runs at about a third of this speed "
            "(`OMP_WAIT_POLICY=PASSIVE` avoids that at a cost of about 30% when alone, so it is not set). Rerun:\n\n"
            "    .venv/bin/python bench/bench_embedded.py --write\n\n" + text + "\n"))


if __name__ == "__main__":
    main()
