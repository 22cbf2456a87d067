"""Training steps per second on this machine's CPU for SmolLM2-135M: full fine-tuning and LoRA, SFT.

Trains the embedded SmolLM2-135M (the GGUF read through transformers, converted once) with
``condor.train.trainer.train_model`` on a fixed synthetic chat dataset, with no checkpoint and no other
work in the timed part, and reports optimizer steps per second and tokens per second. The first step
(allocation, warm-up) is left out of the rate. ``--write`` replaces its section of docs/benchmarks.md.

    .venv/bin/python bench/bench_train.py --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import torch
from bench_memory import ROOT, update_section

from condor.train.settings import TrainSettings
from condor.train.trainer import train_model

SECTION = "## Training speed (CPU)"
TOPICS = ["bread", "rivers", "chess", "volcanoes", "tea", "bicycles", "bees", "glass"]


def dataset(path: Path, rows: int) -> Path:
    lines = []
    for i in range(rows):
        topic = TOPICS[i % len(TOPICS)]
        question = f"Explain in a few sentences how {topic} works, and give one surprising fact about it. ({i})"
        answer = (f"Here is a short explanation of {topic}. " * 6) + f"A surprising fact: {topic} has a long history."
        lines.append(json.dumps({"messages": [{"role": "user", "content": question},
                                              {"role": "assistant", "content": answer}]}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def measure(data: Path, out: Path, lora: bool, steps: int, batch: int, length: int) -> dict:
    settings = TrainSettings(max_steps=steps, batch_size=batch, max_length=length, lora=lora, save_steps=10_000,
                             learning_rate=1e-4 if lora else 2e-5, warmup_ratio=0.0)
    result = train_model("sft", data, out, settings, quiet=True)
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    times = [e["time"] for e in log if "loss" in e]
    # Steps 2..N: the first step pays for allocating optimizer state and warming kernels.
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
    return {"mode": "LoRA (r 16, all linear layers)" if lora else "full", "steps": result.steps, "rate": rate,
            "loss": (result.first_loss, result.final_loss)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        data = dataset(Path(scratch) / "data.jsonl", args.steps * args.batch_size)
        for lora in (False, True):
            rows.append(measure(data, Path(scratch) / ("lora" if lora else "full"), lora, args.steps,
                                args.batch_size, args.max_length))
    tokens = args.batch_size * args.max_length
    table = ["| mode | steps | steps/s | rows/s | about tokens/s | loss first -> last |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        table.append(f"| {r['mode']} | {r['steps']} | {r['rate']:.3f} | {r['rate'] * args.batch_size:.2f} | "
                     f"{r['rate'] * tokens:.0f} | {r['loss'][0]:.3f} -> {r['loss'][1]:.3f} |")
    text = "\n".join(table)
    print(text)
    if args.write:
        update_section(ROOT / "docs" / "benchmarks.md", SECTION, (
            f"{SECTION}\n\n`condor train sft` on SmolLM2-135M-Instruct (the embedded GGUF, dequantized to float32), "
            f"torch {torch.__version__} on {os.cpu_count()} cores ({platform.machine()}), {torch.get_num_threads()} "
            f"threads, fp32, batch {args.batch_size}, rows of up to {args.max_length} tokens, {args.steps} steps; the rate "
            "leaves out the first step. Tokens/s counts padded positions (batch x max length), an upper bound. "
            "Rerun:\n\n    .venv/bin/python bench/bench_train.py --write\n\n" + text + "\n"))


if __name__ == "__main__":
    main()
