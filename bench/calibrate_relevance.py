"""Calibrate the on-topic thresholds (condor.filters.relevance) on the shipped trees, both languages.

For a sample of leaves it writes questions in the styles of the seven task types, and scores them:

- on topic: each question against its own tag path;
- topic only: the same styles naming only the leaf's parent topic, against the leaf's path (loosely on
  topic: a threshold should keep most of these);
- crossed: the same question against the tag path of a leaf from another domain (off topic);
- generic: everyday questions about nothing in particular, against every sampled tag path.

It prints, for each scorer and language, the share of each kind a threshold rejects. A good threshold
rejects almost no on-topic question and most crossed and generic ones. Rerun:

    HF_HUB_OFFLINE=1 .venv/bin/python bench/calibrate_relevance.py [--leaves 300] [--write]

(--write replaces the calibration section of docs/benchmarks.md.)
"""

from __future__ import annotations

import argparse
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from condor.filters.relevance import THRESHOLDS, EmbeddingScorer, TopicScorer  # noqa: E402
from condor.tree.io import resolve_tree  # noqa: E402

TEMPLATES = {
    "en": [
        "Could you explain the basics of {leaf} to someone who has never heard of it?",
        "I'm a small business owner. How should I think about {leaf} when planning next year?",
        "Pretend you are an expert in {topic} and answer my worries about {leaf}.",
        "What are the most common mistakes people make with {leaf}, and how can I avoid them?",
        "Here is a short note I wrote on {leaf}: it seems confusing. Can you rewrite it as three bullet points?",
        "Is {leaf} overrated? Give me your view with arguments for and against.",
        "Write a short story in which a character learns something surprising about {leaf}.",
    ],
    "zh": [
        "能给从没接触过的人讲讲{leaf}的基本知识吗？",
        "我是一家小公司的老板，明年做计划时应该怎样考虑{leaf}？",
        "假设你是{topic}方面的专家，请回答我对{leaf}的担心。",
        "人们在{leaf}上最常犯哪些错误？应该怎样避免？",
        "这是我写的一段关于{leaf}的笔记，读起来很乱，能改写成三条要点吗？",
        "{leaf}是不是被高估了？请给出正反两方面的观点。",
        "写一个小故事，讲一个人物在{leaf}上学到了意想不到的东西。",
    ],
}
GENERIC = {
    "en": [
        "The story will have a beginning, middle, and end.",
        "What is the capital of France?",
        "Write a poem about love and loss.",
        "How do I stay motivated when I work from home?",
        "Tell me a joke to cheer me up.",
        "Summarise the plot of a famous novel in three sentences.",
    ],
    "zh": [
        "这个故事会有开头、中间和结尾。",
        "法国的首都是哪里？",
        "写一首关于爱情和离别的诗。",
        "在家工作时怎样保持动力？",
        "讲个笑话让我开心一下。",
        "用三句话概括一部名著的情节。",
    ],
}


def leaves(lang: str, count: int, seed: int) -> list[tuple[str, ...]]:
    tree = resolve_tree(lang)
    paths = [tuple(p) for p in tree.leaves()]
    random.Random(seed).shuffle(paths)
    return paths[:count]


def score_sets(scorer: TopicScorer, lang: str, paths: list[tuple[str, ...]], seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    questions, loose, own, other, langs = [], [], [], [], []
    for path in paths:
        template = rng.choice(TEMPLATES[lang])
        topic = path[-2] if len(path) > 1 else path[0]
        questions.append(template.format(leaf=path[-1], topic=topic))
        loose.append(template.format(leaf=topic, topic=path[0]))
        own.append(list(path))
        stranger = rng.choice([p for p in paths if p[0] != path[0]])
        other.append(list(stranger))
        langs.append(lang)
    on = [s for s, _ in scorer.scores(questions, own, langs)]
    topic_only = [s for s, _ in scorer.scores(loose, own, langs)]
    crossed = [s for s, _ in scorer.scores(questions, other, langs)]
    gen_q = [q for q in GENERIC[lang] for _ in paths[:50]]
    gen_paths = [list(p) for _ in GENERIC[lang] for p in paths[:50]]
    generic = [s for s, _ in scorer.scores(gen_q, gen_paths, [lang] * len(gen_q))]
    return {"on topic": on, "topic only": topic_only, "crossed": crossed, "generic": generic}


def rejected(scores: list[float], threshold: float) -> float:
    return sum(1 for s in scores if s < threshold) / max(1, len(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--leaves", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    scorers = [("lexical", TopicScorer())]
    try:
        scorers.insert(0, ("minilm", EmbeddingScorer()))
    except Exception as exc:  # the embeddings extra is optional
        print(f"MiniLM not available ({exc}); lexical only", file=sys.stderr)
    rows = []
    for name, scorer in scorers:
        for lang in ("en", "zh"):
            if name == "minilm" and lang == "zh":
                continue  # Chinese is always scored lexically (MiniLM is an English model)
            sets = score_sets(scorer, lang, leaves(lang, args.leaves, args.seed), args.seed)
            default = THRESHOLDS.get((name, lang))
            for threshold in sorted({0.02, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, *( [default] if default else [])}):
                rows.append((name, lang, threshold,
                             *(rejected(sets[k], threshold) for k in ("on topic", "topic only", "crossed", "generic")),
                             threshold == default))
    lines = [
        "| scorer | language | threshold | on topic rejected | topic only rejected | crossed rejected | generic rejected |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, lang, threshold, on, loose, crossed, generic, is_default in rows:
        mark = " **(default)**" if is_default else ""
        lines.append(f"| {name} | {lang} | {threshold:.2f}{mark} | {on:.1%} | {loose:.1%} | {crossed:.1%} | {generic:.1%} |")
    table = "\n".join(lines)
    print(table)
    if args.write:
        section = (
            "## On-topic thresholds (relevance calibration)\n\n"
            f"`bench/calibrate_relevance.py` on {args.leaves} leaves per shipped tree (seed {args.seed}): questions "
            "in the seven task styles that name their leaf, scored against their own tag path (on topic), against "
            "a leaf of another domain (crossed) and six everyday questions against every tag path (generic). "
            "Rerun:\n\n    HF_HUB_OFFLINE=1 .venv/bin/python bench/calibrate_relevance.py --write\n\n" + table + "\n"
        )
        doc = ROOT / "docs" / "benchmarks.md"
        text = doc.read_text(encoding="utf-8")
        text = re.sub(r"## On-topic thresholds \(relevance calibration\)\n.*?(?=\n## |\Z)", "", text, flags=re.DOTALL).rstrip()
        doc.write_text(text + "\n\n" + section, encoding="utf-8")


if __name__ == "__main__":
    main()
