"""Exact and near-duplicate detection for questions (or any text field), first occurrence kept.

Two texts are exact duplicates when they are equal after :func:`normalize` (NFKC, case folding,
punctuation dropped, whitespace collapsed, no spaces around CJK characters). They are near duplicates
when the Jaccard similarity of their character n-gram sets, estimated with MinHash and found through
LSH (datasketch), reaches the threshold. Character n-grams rather than words make the same measure
work for Chinese, which has no spaces between words: 3-grams for alphabetic text, 2-grams for text
that is mostly CJK, where one character already carries about a syllable of meaning and 3-grams
would make a one-character edit look like a large change.

The detector is streaming: :class:`Deduplicator` sees texts one at a time and remembers only the kept
ones (a hash and a MinHash each), so it can sit in front of a writer. It does not decide which of two
duplicates is better; the earlier one wins, which keeps runs deterministic and resumable.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from functools import lru_cache
from typing import Any, Iterable, NamedTuple

NGRAM = 3
CJK_NGRAM = 2
NUM_PERM = 128


class Duplicate(NamedTuple):
    """Why a text was flagged: ``exact_duplicate`` or ``near_duplicate``, of which earlier id."""

    reason: str
    duplicate_of: str
    similarity: float = 1.0

    @property
    def detail(self) -> str:
        if self.reason == "exact_duplicate":
            return f"same text as {self.duplicate_of} after normalisation"
        return f"estimated {self.similarity:.2f} character n-gram similarity with {self.duplicate_of}"


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return (
        0x4E00 <= code <= 0x9FFF
        or 0x3400 <= code <= 0x4DBF
        or 0x20000 <= code <= 0x2FA1F
        or 0xF900 <= code <= 0xFAFF
        or 0x3040 <= code <= 0x30FF
        or 0xAC00 <= code <= 0xD7AF
    )


#: Punctuation by Unicode category, but operators in code and formulas.
_OPERATORS = frozenset("*/-#%&@\\_")
#: The same ranges as :func:`_is_cjk`, for counting in C.
_CJK_CHAR = re.compile("[\u4e00-\u9fff\u3400-\u4dbf\U00020000-\U0002fa1f\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_HYPHEN = re.compile(r"(?<=\w)-(?=\w)")


class _Spaces(dict):
    """A ``str.translate`` table filled on first use: punctuation, separators and control characters
    become a space, everything else stays. Looking a character's category up once, instead of once per
    occurrence, makes :func:`normalize` several times faster."""

    LIMIT = 1 << 16  # characters remembered; past that (hostile input), looked up every time

    def __missing__(self, code: int) -> int:
        ch = chr(code)
        value = 32 if unicodedata.category(ch)[0] in "PZC" and ch not in _OPERATORS else code
        if len(self) < self.LIMIT:
            self[code] = value
        return value


_SPACES = _Spaces()


def _spell_hyphen(match: re.Match) -> str:
    text, at = match.string, match.start()
    return " " if text[at - 1].isalpha() and text[at + 1].isalpha() else "-"


def normalize(text: str) -> str:
    """The comparison form of a text: equal for texts that differ only in case, width, spacing or punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    # A hyphen between two letters joins words ("ten-year-old"), which is spelling, not an operator.
    if "-" in text:
        text = _HYPHEN.sub(_spell_hyphen, text)
    # Punctuation, separators and control characters become spaces; symbols (+, =) carry meaning, and
    # so do the ASCII punctuation marks that work as operators: "a * b" is not "a b", "-5" is not "5".
    words = text.translate(_SPACES).split()
    if text.isascii():
        return " ".join(words)
    out: list[str] = []
    for word in words:
        # Spaces carry no meaning next to CJK characters ("你好 世界" == "你好世界").
        if out and (_is_cjk(out[-1][-1]) or _is_cjk(word[0])):
            out[-1] += word
        else:
            out.append(word)
    return " ".join(out)


def ngram_size(normalized: str) -> int:
    """2 for mostly-CJK text, else 3 (see the module docstring)."""
    letters = "".join(normalized.split())
    cjk = 0 if letters.isascii() else len(_CJK_CHAR.findall(letters))
    return CJK_NGRAM if letters and cjk * 2 > len(letters) else NGRAM


def shingles(normalized: str, n: int | None = None) -> set[str]:
    """Character n-grams of a normalised text; a text shorter than n is its own single shingle."""
    n = n or ngram_size(normalized)
    if len(normalized) <= n:
        return {normalized} if normalized else set()
    return {normalized[i : i + n] for i in range(len(normalized) - n + 1)}


@lru_cache(maxsize=16)
def _lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """LSH bands and rows for a threshold; datasketch finds them by numerical integration, which is
    slow enough (tens of milliseconds) to be worth computing once per setting."""
    from datasketch import MinHashLSH

    probe = MinHashLSH(threshold=threshold, num_perm=num_perm)
    return probe.b, probe.r


class Deduplicator:
    """Streams texts and reports, for each, whether it duplicates one kept earlier."""

    def __init__(self, threshold: float = 0.8, num_perm: int = NUM_PERM, ngram: int | None = None) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        from datasketch import MinHash, MinHashLSH  # imported here: numpy and scipy stay out of `import condor`

        self.threshold = threshold
        self.num_perm = num_perm
        self.ngram = ngram
        self._exact: dict[bytes, str] = {}
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, params=_lsh_params(threshold, num_perm))
        # Every sketch copies one empty template: building permutations anew costs ten times more.
        # CRC-32 as the base hash: a C function, several times faster per shingle than datasketch's
        # SHA-1 in Python; MinHash needs distinct shingles to get distinct values, which 32 bits give,
        # and the seeded permutations on top supply the randomness.
        self._blank = MinHash(num_perm=num_perm, seed=1, hashfunc=zlib.crc32)
        self._hashes: dict[str, Any] = {}
        self._order: dict[str, int] = {}
        self._seen: set[str] = set()

    def _minhash(self, grams: set[bytes]) -> Any:
        sketch = self._blank.copy()
        sketch.update_batch(grams)  # order does not change a minimum: no sorting
        return sketch

    def _grams(self, normalized: str) -> set[bytes]:
        """:func:`shingles` as UTF-8 bytes, what the sketch hashes. ASCII text (most of it) is encoded
        once and sliced, the same n-grams without encoding each one."""
        n = self.ngram or ngram_size(normalized)
        if not normalized.isascii() or len(normalized) <= n:
            return {gram.encode("utf-8") for gram in shingles(normalized, n)}
        data = normalized.encode("ascii")
        return {data[i : i + n] for i in range(len(data) - n + 1)}

    def check(self, key: str, text: str) -> Duplicate | None:
        """Whether ``text`` duplicates a kept text; if not, it is kept under ``key``."""
        if key in self._seen:
            raise ValueError(f"id {key!r} was already seen by this deduplicator")
        self._seen.add(key)
        normalized = normalize(text)
        digest = hashlib.blake2b(normalized.encode("utf-8"), digest_size=16).digest()
        if digest in self._exact:
            return Duplicate("exact_duplicate", self._exact[digest])
        grams = self._grams(normalized)
        sketch = self._minhash(grams) if grams else None
        if sketch is not None:
            best: tuple[float, int, str] | None = None
            for other in self._lsh.query(sketch):
                similarity = sketch.jaccard(self._hashes[other])
                if similarity >= self.threshold:
                    rank = (similarity, -self._order[other], other)
                    if best is None or rank > best:
                        best = rank
            if best is not None:
                return Duplicate("near_duplicate", best[2], round(best[0], 4))
        self._exact[digest] = key
        if sketch is not None:
            self._order[key] = len(self._order)
            self._hashes[key] = sketch
            self._lsh.insert(key, sketch)
        return None


def find_duplicates(
    records: Iterable[dict[str, Any]], key: str = "question", threshold: float = 0.8
) -> dict[str, Duplicate]:
    """Duplicates among ``records`` by their ``key`` field: ``{id: Duplicate(reason, duplicate_of, similarity)}``.

    Records are taken in order and the first occurrence is kept, so only later copies appear here.
    """
    detector = Deduplicator(threshold=threshold)
    found: dict[str, Duplicate] = {}
    for record in records:
        record_id = record.get("id")
        if not isinstance(record_id, str):
            raise ValueError(f"record without a string 'id' given to find_duplicates: {str(record)[:80]}")
        text = record.get(key)
        if not isinstance(text, str):
            raise ValueError(f"record {record_id!r} has no text field {key!r}")
        duplicate = detector.check(record_id, text)
        if duplicate is not None:
            found[record_id] = duplicate
    return found
