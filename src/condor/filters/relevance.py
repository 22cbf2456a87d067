"""On topic: a question must be about the tag it was written for.

A question is scored against its tag path (``domain > topic > leaf``):

- with the offline all-MiniLM-L6-v2 embeddings (the ``embeddings`` extra), by cosine similarity;
- without them, lexically: the share of the tag path's content words (their first five letters, so
  that "statements" meets "statement") or, for Chinese, of its character pairs, found in the question.

Below the threshold the question is rejected as ``off_topic``, with the score, the threshold and the
scorer in the detail; every kept question carries ``relevance: {"score", "scorer"}``. The default
thresholds were calibrated on the shipped trees in both languages (``bench/calibrate_relevance.py``;
the numbers are in docs/benchmarks.md). MiniLM is an English model, so Chinese questions are always
scored lexically.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Sequence

from condor.filters.base import Gate
from condor.stages.base import Record, Rejection

#: Calibrated defaults per (scorer, language); see the module docstring.
THRESHOLDS = {("minilm", "en"): 0.15, ("lexical", "en"): 0.05, ("lexical", "zh"): 0.05}
_LATIN = re.compile(r"[a-z0-9]+")
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_STOP = frozenset(
    "a an and the of for to in on at by with from or vs as is are be your my our their its how what why when "
    "which who into about over under between basic basics general other others misc miscellaneous".split()
)


def tag_text(tag_path: Sequence[str]) -> str:
    return " > ".join(str(part) for part in tag_path)


def _stems(text: str) -> set[str]:
    words = _LATIN.findall(unicodedata.normalize("NFKC", text).casefold())
    return {w[:5] for w in words if len(w) >= 3 and w not in _STOP}


def _pairs(text: str) -> set[str]:
    out: set[str] = set()
    for run in _CJK_RUN.findall(text):
        out.update(run[i : i + 2] for i in range(len(run) - 1))
        if len(run) == 1:
            out.add(run)
    return out


def lexical_score(question: str, tag_path: Sequence[str]) -> float:
    """Share of the tag path's content stems and Chinese character pairs found in the question."""
    wanted = _stems(tag_text(tag_path)) | _pairs(tag_text(tag_path))
    if not wanted:
        return 1.0  # a tag made only of symbols or numbers says nothing to compare with
    found = _stems(question) | _pairs(question)
    return len(wanted & found) / len(wanted)


class TopicScorer:
    """Scores questions against tag paths; ``kind`` names the scorer in rejections and records."""

    kind = "lexical"

    def scores(self, questions: Sequence[str], tag_paths: Sequence[Sequence[str]], languages: Sequence[str]) -> list[tuple[float, str]]:
        return [(lexical_score(q, path), "lexical") for q, path in zip(questions, tag_paths, strict=True)]


class EmbeddingScorer(TopicScorer):
    """MiniLM cosine similarity for English questions, the lexical score for Chinese ones."""

    kind = "minilm"

    def __init__(self, embedder: Any = None) -> None:
        from condor.tree.embeddings import MiniLMEmbedder

        self.embedder = embedder or MiniLMEmbedder()

    def scores(self, questions: Sequence[str], tag_paths: Sequence[Sequence[str]], languages: Sequence[str]) -> list[tuple[float, str]]:
        import numpy as np

        out = super().scores(questions, tag_paths, languages)
        english = [i for i, lang in enumerate(languages) if lang != "zh"]
        if english:
            q = np.asarray(self.embedder.embed([questions[i] for i in english]), dtype=float)
            t = np.asarray(self.embedder.embed([tag_text(tag_paths[i]) for i in english]), dtype=float)
            for i, score in zip(english, (q * t).sum(axis=1)):
                out[i] = (float(score), "minilm")
        return out


def make_scorer(mode: str) -> TopicScorer | None:
    """The scorer for ``relevance: auto|embeddings|lexical|off``; auto takes MiniLM when installed."""
    if mode == "off":
        return None
    if mode == "lexical":
        return TopicScorer()
    from condor.tree.embeddings import EmbeddingsUnavailable, minilm_model_dir

    import importlib.util

    try:
        minilm_model_dir()
        # Only whether it is there: importing it costs seconds, paid when the first question is scored.
        if importlib.util.find_spec("sentence_transformers") is None:
            raise EmbeddingsUnavailable("sentence-transformers is missing")
    except EmbeddingsUnavailable:
        if mode == "embeddings":
            from condor.errors import ConfigError

            raise ConfigError("relevance: embeddings needs the embeddings extra: pip install 'condor-data[embeddings]'") from None
        return TopicScorer()
    return EmbeddingScorer()


class OnTopic(Gate):
    """Rejects questions that score below the threshold against their tag path."""

    name = "on_topic"

    def __init__(self, scorer: TopicScorer, threshold: float | None = None) -> None:
        self.scorer = scorer
        self.threshold = threshold
        # Embeddings of a batch may differ in the last bits with its make-up (padding, kernel choice),
        # and so may a rounded score: such a scorer sees fixed chunks. The lexical score is per record.
        self.ordered = self.chunked = self.threaded = scorer.kind != "lexical"
        # Yet a verdict is the record's own but for those last bits: a sharded run scores its questions
        # in its own chunks (so a score within rounding of the threshold may go the other way than in
        # one unsharded run) rather than answer every off-topic question and leave the gate to the merge.
        self.across_records = False

    @property
    def settings(self) -> Any:
        return [self.scorer.kind, self.threshold]

    def limit(self, scorer: str, language: str) -> float:
        if self.threshold is not None:
            return self.threshold
        return THRESHOLDS.get((scorer, language), THRESHOLDS[("lexical", "en")])

    def check(self, record: Record) -> Record | Rejection:
        return self.check_batch([record])[0]

    def check_batch(self, records: list[Record]) -> list[Record | Rejection]:
        if not records:
            return []
        scored = self.scorer.scores(
            [r.get("question") or "" for r in records],
            [r.get("tag_path") or [] for r in records],
            [r.get("language") or "en" for r in records],
        )
        out: list[Record | Rejection] = []
        for record, (score, scorer) in zip(records, scored, strict=True):
            limit = self.limit(scorer, record.get("language") or "en")
            if record.get("tag_path") and score < limit:
                detail = f"similarity {score:.2f} to {tag_text(record['tag_path'])!r} is below {limit:.2f} ({scorer})"
                out.append(Rejection(self.name, "off_topic", detail, record))
            else:
                out.append({**record, "relevance": {"score": round(score, 4), "scorer": scorer}})
        return out
