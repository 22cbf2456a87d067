"""Tokens per second of the embedded backend (SmolLM2-135M through llama.cpp), plain and with a schema.

Runs a few fixed generations through ``EmbeddedBackend.generate`` on this machine and reports completion
tokens per second of wall time: plain (with and without llama.cpp's flash attention), with the schema
held by llguidance (the default), and with llama.cpp's own grammar (the fallback without llguidance);
then prompt tokens read per second, with and without flash attention. ``--write`` replaces its section of
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
from condor.llm.base import ChatRequest, Completion
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


#: A refinement-sized prompt (about 600 tokens, as Condor Refine's): reading it is most of such a request.
LONG_PROMPT = " ".join(["The answer explains the first steps clearly, but it repeats its advice about budgets, leaves "
                        "out what the project costs, and ends before it says how to measure progress."] * 18)


async def timed(backend: EmbeddedBackend, requests: list[ChatRequest]) -> tuple[list[Completion], float]:
    """The completions of ``requests`` and the seconds they took, the model loaded beforehand."""
    await backend.warm_up()
    started = time.monotonic()
    completions = await backend.generate(requests)
    seconds = time.monotonic() - started
    await backend.aclose()
    return completions, seconds


async def measure(schema: bool, max_tokens: int, repeats: int, flash_attn: bool = True) -> tuple[int, float]:
    backend = EmbeddedBackend(max_tokens=max_tokens, temperature=0.7, seed=3, flash_attn=flash_attn)
    requests = [
        ChatRequest(messages=[{"role": "user", "content": p}], json_schema=SCHEMA if schema else None, sample_index=i)
        for i in range(repeats)
        for p in PROMPTS
    ]
    completions, seconds = await timed(backend, requests)
    return sum(c.completion_tokens for c in completions), seconds


async def reading(repeats: int, flash_attn: bool) -> tuple[int, float]:
    """Prompt tokens read per second: long prompts, one token written. Each prompt starts differently, so
    llama.cpp cannot reuse the last one's evaluated prefix."""
    backend = EmbeddedBackend(max_tokens=1, temperature=0.0, flash_attn=flash_attn)
    requests = [ChatRequest(messages=[{"role": "user", "content": f"Review {i}. {LONG_PROMPT}"}]) for i in range(repeats * 3)]
    completions, seconds = await timed(backend, requests)
    return sum(c.prompt_tokens for c in completions), seconds


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
    tokens, seconds = asyncio.run(measure(False, args.max_tokens, args.repeats, flash_attn=False))
    rows.append(("plain, flash attention off", tokens, seconds))
    guide_tokenizer = embedded.guide_tokenizer
    embedded.guide_tokenizer = lambda llama: None  # the fallback: llama.cpp's grammar over the whole vocabulary
    tokens, seconds = asyncio.run(measure(True, args.max_tokens, args.repeats))
    rows.append(("JSON schema (llama.cpp grammar)", tokens, seconds))
    embedded.guide_tokenizer = guide_tokenizer
    table = ["| output | generations | completion tokens | seconds | tokens/s |", "|---|---:|---:|---:|---:|"]
    for label, tokens, seconds in rows:
        table.append(f"| {label} | {len(PROMPTS) * args.repeats} | {tokens} | {seconds:.1f} | {tokens / seconds:.0f} |")
    table += ["", "| prompt reading | prompts | prompt tokens | seconds | tokens/s |", "|---|---:|---:|---:|---:|"]
    for label, flash_attn in (("flash attention on (the default)", True), ("flash attention off", False)):
        tokens, seconds = asyncio.run(reading(args.repeats, flash_attn))
        table.append(f"| {label} | {args.repeats * 3} | {tokens} | {seconds:.1f} | {tokens / seconds:.0f} |")
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
