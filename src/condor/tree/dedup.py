"""Near-duplicate detection among sibling tag names.

Two names are the same tag when their normalised text is equal (case, width, spacing and punctuation
ignored), or when the MinHash estimate of the Jaccard similarity of their character 3-grams reaches a
threshold. Character n-grams rather than words because Chinese has no spaces; the string is padded
with boundary marks so that two-character Chinese names still yield several grams.

Sibling sets are small, so each new name is compared with every kept one; MinHash keeps the measure
the same as the question-level filter and lets the threshold mean the same thing in both places.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

DEFAULT_THRESHOLD = 0.7
_NUM_PERM = 128


# Punctuation that carries meaning in a name: "C++", "C#", ".NET", "R&D", "TCP/IP", "100%" are not
# "C", "NET", "RD"... Symbols (category S, e.g. "+") are kept for the same reason. Other punctuation
# (hyphens, quotes, brackets, full stops such as "。", middle dots) is spelling variation and dropped.
_MEANINGFUL_PUNCTUATION = frozenset("#.&@%*/\\")
_DIGITS = re.compile(r"\d+")


def normalise(text: str) -> str:
    """Lower-case NFKC text without spaces, control characters or punctuation other than the
    meaningful kind (symbols such as "+" and marks such as "#" and "." are kept)."""
    # A trailing full stop is sentence punctuation, not part of the name; a leading one (".NET") is.
    folded = unicodedata.normalize("NFKC", text).casefold().strip().rstrip(".")
    return "".join(ch for ch in folded if _kept(ch))


def _kept(ch: str) -> bool:
    category = unicodedata.category(ch)[0]
    if category in "ZC":
        return False
    return category != "P" or ch in _MEANINGFUL_PUNCTUATION


def char_ngrams(text: str, n: int = 3) -> set[str]:
    padded = f"\x02{normalise(text)}\x03"
    if len(padded) <= n:
        return {padded}
    return {padded[i : i + n] for i in range(len(padded) - n + 1)}


class NearDuplicateFilter:
    """Remembers accepted names; :meth:`check` says which accepted name a new one duplicates, if any."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, names: list[str] | tuple[str, ...] = ()) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._kept: list[tuple[str, str, Any]] = []
        for name in names:
            self.add(name)

    def check(self, name: str) -> str | None:
        """The kept name that ``name`` duplicates, or None."""
        key = normalise(name)
        digits = _DIGITS.findall(key)
        signature = None
        for kept_name, kept_key, kept_signature in self._kept:
            if key == kept_key:
                return kept_name
            # Names that differ in a number are different tags however similar the rest is:
            # "Vitamin B12" is not "Vitamin B1", "Python 2" is not "Python 3".
            if digits != _DIGITS.findall(kept_key):
                continue
            if signature is None:
                signature = _minhash(name)
            if signature.jaccard(kept_signature) >= self.threshold:
                return kept_name
        return None

    def add(self, name: str) -> None:
        self._kept.append((name, normalise(name), _minhash(name)))

    def offer(self, name: str) -> str | None:
        """Keep ``name`` unless it duplicates a kept one; returns the duplicated name, or None if kept."""
        duplicate = self.check(name)
        if duplicate is None:
            self.add(name)
        return duplicate


def _minhash(text: str) -> Any:
    from datasketch import MinHash  # numpy-backed; imported on first use so `import condor` stays light

    signature = MinHash(num_perm=_NUM_PERM, seed=1)
    signature.update_batch([gram.encode("utf-8") for gram in sorted(char_ngrams(text))])
    return signature
