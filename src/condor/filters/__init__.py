"""Model-free gates: pure checks of one record that keep it or reject it with a reason.

:mod:`condor.filters.base` defines a :class:`Gate`; :mod:`condor.filters.gates` holds the default
pipeline's gates, built on :mod:`condor.filters.dedup` (exact and near duplicates, first occurrence
kept) and :mod:`condor.filters.quality` (length, truncation, refusals, language). None of them calls a
model or writes a file.
"""

from condor.filters.dedup import Deduplicator, Duplicate, find_duplicates, normalize
from condor.filters.quality import QualityFilter, QualityIssue, check_text, detect_language, refusal_phrase

__all__ = [
    "Deduplicator",
    "Duplicate",
    "QualityFilter",
    "QualityIssue",
    "check_text",
    "detect_language",
    "find_duplicates",
    "normalize",
    "refusal_phrase",
]
