"""How varied a dataset's questions are, measured with sentence embeddings, and a 2-D map of them.

Questions are embedded with the offline all-MiniLM-L6-v2 (:class:`condor.tree.embeddings.MiniLMEmbedder`;
nothing is downloaded). On a seeded sample (all questions when there are fewer than ``sample``):

- mean pairwise cosine distance (1 - cosine similarity over all pairs; higher is more varied);
- near-duplicate rate: the share of questions whose closest other question has a cosine similarity of
  at least ``threshold``.

The map is t-SNE (scikit-learn) of a smaller sample, optionally with a reference dataset's questions
embedded alongside, so the two clouds can be compared in one picture (the paper compares Condor's
questions with Magpie's this way). A reference is a JSONL file (``question``, ``instruction``,
``prompt`` or chat ``messages``) or plain text with one question per line.

Leaves out: exact all-pairs statistics past the sample size (quadratic), and UMAP (numba is heavy).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from condor.tree.embeddings import Embedder, EmbeddingsUnavailable

#: Questions sampled for the distance and near-duplicate numbers (pairs grow as the square).
SAMPLE = 5000
MAP_POINTS = 2000
NEAR_DUPLICATE = 0.9


@dataclass
class Diversity:
    questions: int
    sample: int
    mean_distance: float
    near_duplicate_rate: float
    threshold: float
    model: str
    reference: dict[str, Any] | None = None
    #: ``[x, y, group]`` with group 0 for the run's questions and 1 for the reference's.
    points: list[list[float]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_reference(path: str | Path) -> list[str]:
    """Questions of a reference dataset: JSONL rows (several layouts) or one question per line."""
    questions = []
    file = Path(path)
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{file}: cannot read the reference questions ({exc})") from None
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                row = json.loads(text)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict):
                question = _question_of(row)
                if question:
                    questions.append(question)
                continue
        questions.append(text)
    return questions


def _first_user_turn(turns: Any) -> str | None:
    for turn in turns if isinstance(turns, list) else ():
        if isinstance(turn, dict) and turn.get("role", turn.get("from")) in ("user", "human"):
            text = turn.get("content", turn.get("value"))
            if isinstance(text, str) and text.strip():
                return text
    return None


def _question_of(row: dict[str, Any]) -> str | None:
    for key in ("question", "instruction", "prompt", "query"):
        value = row.get(key)
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, list):  # TRL's conversational prompt
            return _first_user_turn(value)
    return _first_user_turn(row.get("messages")) or _first_user_turn(row.get("conversations"))


def _sample(items: Sequence[str], size: int, seed: int) -> list[str]:
    if len(items) <= size:
        return list(items)
    return random.Random(seed).sample(list(items), size)


def _distance_stats(vectors: Any, threshold: float) -> tuple[float, float]:
    """(mean pairwise cosine distance, near-duplicate rate) of L2-normalised rows, in blocks."""
    import numpy as np

    n = len(vectors)
    if n < 2:
        return 0.0, 0.0
    total = 0.0
    near = 0
    for start in range(0, n, 1024):
        block = vectors[start:start + 1024] @ vectors.T
        for offset in range(len(block)):
            block[offset, start + offset] = -np.inf  # a question is not its own neighbour
        near += int((block.max(axis=1) >= threshold).sum())
        finite = np.where(np.isfinite(block), block, 0.0)
        total += float(finite.sum())
    mean_similarity = total / (n * (n - 1))
    return 1.0 - mean_similarity, near / n


def _map(vectors: Any, seed: int) -> Any:
    try:
        from sklearn.manifold import TSNE
    except ImportError:
        raise EmbeddingsUnavailable("scikit-learn is missing for the question map; pip install 'condor-data[report]'") from None
    from threadpoolctl import threadpool_limits

    perplexity = float(max(2, min(30, (len(vectors) - 1) // 3)))
    tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed, max_iter=750)
    # Small maps gain nothing from threads, and OpenMP threads that spin against another busy process
    # on a 2-core machine turn a 0.1 s fit into 10 s or more.
    with threadpool_limits(1 if len(vectors) < 1000 else None):
        return tsne.fit_transform(vectors)


def question_diversity(
    questions: Sequence[str],
    reference: Sequence[str] | None = None,
    *,
    embedder: Embedder | None = None,
    sample: int = SAMPLE,
    map_points: int = MAP_POINTS,
    threshold: float = NEAR_DUPLICATE,
    seed: int = 0,
    reference_name: str = "reference",
) -> Diversity:
    """Diversity numbers of ``questions`` (and of ``reference``, if given) and the map of both."""
    import numpy as np

    if embedder is None:
        from condor.tree.embeddings import MiniLMEmbedder

        embedder = MiniLMEmbedder()
    chosen = _sample(questions, sample, seed)
    vectors = np.asarray(embedder.embed(chosen), dtype=np.float32) if chosen else np.zeros((0, 384), np.float32)
    distance, near = _distance_stats(vectors, threshold)
    result = Diversity(len(questions), len(chosen), distance, near, threshold, embedder.identity)
    ref_vectors = None
    if reference:
        ref_chosen = _sample(reference, sample, seed)
        ref_vectors = np.asarray(embedder.embed(ref_chosen), dtype=np.float32)
        ref_distance, ref_near = _distance_stats(ref_vectors, threshold)
        result.reference = {"name": reference_name, "questions": len(reference), "sample": len(ref_chosen),
                            "mean_distance": ref_distance, "near_duplicate_rate": ref_near}
    # The map is drawn from the first ``map_points`` of each (already random) sample.
    on_map = [vectors[:map_points]] + ([ref_vectors[:map_points]] if ref_vectors is not None else [])
    stacked = np.concatenate(on_map) if on_map else vectors
    if len(stacked) >= 5:
        coords = _map(stacked, seed)
        groups = [0] * len(on_map[0]) + ([1] * len(on_map[1]) if len(on_map) > 1 else [])
        result.points = [[round(float(x), 3), round(float(y), 3), g] for (x, y), g in zip(coords, groups)]
        result.groups = ["this run"] + ([reference_name] if len(on_map) > 1 else [])
    return result
