"""Model-free filters: duplicate questions and unusable questions or answers, each with a reason.

:mod:`condor.filters.dedup` finds exact and near duplicates (first occurrence kept);
:mod:`condor.filters.quality` checks length, truncation, refusals and language. Both return a reason
slug and a human detail for the executor's ``Rejection(stage="filter", ...)``; neither writes files.
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
