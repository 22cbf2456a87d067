"""CPU cost of the quality gates per 10,000 records: they must not slow a run noticeably.

Builds synthetic records the size of real ones (a question of 20-60 words; answers, critiques and
refinements of 120-400 words, in English and Chinese, a share of them degenerate so that every branch of
the detectors runs) and times each gate over them in one process, the way the pipeline calls it: the
degenerate-text gates record by record (they are the output checks of model steps), the others through
``check_batch`` in chunks (gate steps). Decontamination runs against a synthetic benchmark of 3,000
prompts. MiniLM on-topic scoring is timed only when the embeddings extra is installed.

    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_gates.py [--records 10000] [--write]

(--write replaces the gates section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_memory import update_section  # noqa: E402

from condor.filters.contamination import BenchmarkIndex, Decontaminate  # noqa: E402
from condor.filters.gates import AnswerQuality, NearDuplicates, QuestionQuality  # noqa: E402
from condor.filters.quality import QualityFilter  # noqa: E402
from condor.filters.relevance import OnTopic, TopicScorer  # noqa: E402
from condor.filters.text_gates import (  # noqa: E402
    DegenerateAnswer,
    DegenerateCritique,
    DegenerateQuestion,
    DegenerateRefinement,
)

SECTION = "## Quality gates: CPU per 10,000 records"
CHUNK = 512

EN_WORDS = (
    "soil water light plant root budget ledger cash flow statement interest rate loan bridge load steel beam "
    "river delta climate model protein enzyme cell memory cache thread process kernel poem rhyme verse story "
    "market price demand supply tax audit policy voter court ruling contract tenant landlord recipe flour oven"
).split()
ZH_CHARS = "土壤水分光照植物根系预算现金流量表利率贷款桥梁钢结构河流气候模型蛋白质细胞内存线程诗歌故事市场价格税收合同"
BAD = [
    "Improved_answer",
    "The new answer has been made more concise and accurate.",
    "Use [feature_1_2] to reach [feature_1_2_1].",
    "This is important. " * 12,
    "## Steps",
]


def _sentence(rng: random.Random, lang: str, words: int) -> str:
    if lang == "zh":
        return "".join(rng.choice(ZH_CHARS) for _ in range(words * 2)) + "。"
    body = " ".join(rng.choice(EN_WORDS) for _ in range(words))
    return body[0].upper() + body[1:] + "."


def _text(rng: random.Random, lang: str, words: int) -> str:
    out, left = [], words
    while left > 0:
        n = min(left, rng.randint(8, 20))
        out.append(_sentence(rng, lang, n))
        left -= n
    return " ".join(out) if lang == "en" else "".join(out)


def make_records(count: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    records = []
    for i in range(count):
        lang = "zh" if i % 4 == 3 else "en"
        bad = i % 10 == 0  # one record in ten carries a degenerate field
        leaf = rng.choice(EN_WORDS) if lang == "en" else rng.choice(ZH_CHARS) * 2
        question = _text(rng, lang, rng.randint(20, 60)).rstrip(".。") + ("?" if lang == "en" else "？")
        answer = rng.choice(BAD) if bad and i % 20 == 0 else _text(rng, lang, rng.randint(120, 400))
        refined = rng.choice(BAD) if bad and i % 20 == 10 else _text(rng, lang, rng.randint(120, 400))
        critique = {name: _text(rng, lang, rng.randint(15, 50)) for name in ("strengths", "weaknesses", "suggestions")}
        records.append({
            "id": f"{lang}/{i:08d}/domain_qa/medium", "language": lang, "task": "domain_qa",
            "tag_path": ["Domain", "Topic", leaf], "question": question,
            "versions": [{"round": 0, "answer": answer}, {"round": 1, "answer": refined}],
            "critiques": [critique],
        })
    return records


def benchmark_index(seed: int = 1, prompts: int = 3000) -> BenchmarkIndex:
    rng = random.Random(seed)
    index = BenchmarkIndex()
    for i in range(prompts):
        index.add(_text(rng, "en" if i % 4 else "zh", rng.randint(10, 80)), f"bench.jsonl:{i + 1}")
    return index


def timed(gate, records: list[dict], batched: bool) -> tuple[float, int]:
    """CPU seconds to pass every record through ``gate``, and how many it rejected."""
    gate = gate.fresh()
    started = time.process_time()
    rejected = 0
    if batched:
        for start in range(0, len(records), CHUNK):
            rejected += sum(1 for v in gate.check_batch(records[start : start + CHUNK]) if not isinstance(v, dict))
    else:
        for record in records:
            rejected += 0 if isinstance(gate.check(record), dict) else 1
    return time.process_time() - started, rejected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--write", action="store_true", help="replace the section in docs/benchmarks.md")
    args = parser.parse_args()
    records = make_records(args.records)
    refined = records
    answered = [{**r, "versions": r["versions"][:1]} for r in records]
    quality = QualityFilter(min_chars=10, max_chars=20000)
    gates = [
        ("degenerate question", DegenerateQuestion(), answered, False),
        ("degenerate answer", DegenerateAnswer(), answered, False),
        ("degenerate critique", DegenerateCritique(), refined, False),
        ("degenerate refinement", DegenerateRefinement(), refined, False),
        ("question quality (length, language)", QuestionQuality(quality), answered, True),
        ("answer quality (refusal, cut off, language)", AnswerQuality(quality), answered, True),
        ("on topic, lexical", OnTopic(TopicScorer()), answered, True),
        ("decontamination (3,000 benchmark prompts)", Decontaminate(benchmark_index()), answered, True),
        ("near duplicates (MinHash LSH)", NearDuplicates(0.8), answered, True),
    ]
    try:
        from condor.filters.relevance import EmbeddingScorer

        scorer = EmbeddingScorer()
        scorer.scores(["warm up"], [["a", "b"]], ["en"])  # model load is a one-off, not a per-record cost
        gates.append(("on topic, MiniLM (English records)", OnTopic(scorer), answered, True))
    except Exception as exc:  # the extra is optional; say why the row is missing
        print(f"MiniLM row skipped: {exc}", file=sys.stderr)
    rows = []
    total = 0.0
    for label, gate, data, batched in gates:
        seconds, rejected = timed(gate, data, batched)
        scale = 10_000 / len(data)
        total += seconds * scale if "MiniLM" not in label else 0.0
        rows.append((label, seconds * scale, seconds / len(data) * 1e6, rejected))
    lines = ["| gate | CPU s per 10,000 records | µs per record | rejected |", "|---|---:|---:|---:|"]
    for label, per10k, micro, rejected in rows:
        lines.append(f"| {label} | {per10k:.2f} | {micro:,.0f} | {rejected} |")
    lines.append(f"| **all model-free gates** | **{total:.2f}** | **{total / 10_000 * 1e6:,.0f}** | |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        body = (
            f"{SECTION}\n\n"
            f"`bench/bench_gates.py` on {args.records:,} synthetic records (questions of 20-60 words, answers, "
            "critiques and refinements of 120-400 words, a quarter Chinese, one in ten with a degenerate field), "
            f"CPU time of one process on {os.cpu_count()} cores ({platform.machine()}, Python "
            f"{platform.python_version()}), scaled to 10,000 records. Degenerate-text gates run record by record "
            "(as a model step's output checks), the others in chunks of 512 (as gate steps). Rerun:\n\n"
            "    HF_HUB_OFFLINE=1 .venv/bin/python bench/bench_gates.py --write\n\n"
            f"{table}\n\n"
            "A record costs about four model requests (question share, answer, critique, refinement), each of "
            "them seconds of server time; the model-free gates add the figure in the last row per 10,000 "
            "records, on one core. MiniLM scoring is the only gate that costs real time, and it is batched; "
            "`relevance: lexical` avoids it.\n"
        )
        update_section(ROOT / "docs" / "benchmarks.md", SECTION, body)


if __name__ == "__main__":
    main()
