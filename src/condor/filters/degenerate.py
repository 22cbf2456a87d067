"""Degenerate text: what a careful reader would throw out at a glance, in English and Chinese.

Each detector takes text (and, where it compares, the text it should differ from) and returns a
:class:`Finding` with a reason slug and a short detail, or None:

- :func:`list_fragment` (requests only): one line that opens with list numbering (``3. The new ...``);
- :func:`wordless`: not one word, only digits, punctuation and symbols (``1.2.3.1.1.22``, a bare date);
- :func:`placeholder`: template leftovers such as ``[feature_1_2]``, ``[Your Name]``, ``{{topic}}``,
  ``Improved_answer``, ``Lorem ipsum``, ``【此处填写】``;
- :func:`label_only`: a reply that is only a label or a heading (``Improved answer:``, ``## Steps``);
- :func:`loop`: the same sentence again and again, a phrase repeated to fill the token budget, a word
  stuttering;
- :func:`meta_commentary`: talk about an edit in place of the content ("The new answer has been made
  more concise."; "这是对原回答的修改。");
- :func:`echo`: the reply repeats the text it was given (the question, or the answer it should rewrite);
- :func:`collapse`: a rewrite far shorter than the answer it replaces, when shortening was not asked for;
- :func:`thin`: a critique field with no substance (``1``, ``N/A``, a single word).

What looks suspicious but is fine passes: code (fenced blocks and code-like lines are left out of the
loop and placeholder checks), tables and lists, a two-line poem, a short yes/no answer with its reason.
Every detector is linear in the text. Left out: anything that needs a model.
"""

from __future__ import annotations

import functools
import operator
import re
from collections import Counter
from typing import NamedTuple


class Finding(NamedTuple):
    reason: str
    detail: str


_FENCE = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]{1,200}`")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Indented, or carrying three of the symbols code is made of (brackets and braces are left out: prose
# and templates use them too, and a template token in prose is exactly what must be found).
_CODE_START = re.compile(r"^(?: {4,}|\t)\S|^\s*(?:def|class|import|return|print)\b")
_CODE_SYMBOLS = frozenset(";=<>()")


def _is_code(line: str) -> bool:
    # Counting, not a regex: a pattern for "three symbols anywhere" is quadratic on a long line.
    # str.count per symbol runs in C, several times faster than a loop over the characters.
    return bool(_CODE_START.match(line)) or sum(line.count(symbol) for symbol in _CODE_SYMBOLS) >= 3


@functools.lru_cache(maxsize=32)
def prose(text: str) -> str:
    """``text`` without fenced code blocks, inline code and code-like lines.

    Cached: the detectors of :func:`degenerate` each start from the prose of the same text.
    """
    text = _FENCE.sub("\n", text)
    text = _INLINE_CODE.sub(" ", text)
    return "\n".join(line for line in text.splitlines() if not _is_code(line))


def tokens(text: str) -> list[str]:
    """Lower-cased words, with each CJK character a token of its own."""
    # Lower-casing the whole text first costs one C call instead of one per word.
    return _WORD.findall(text.lower())


def _cjk_count(text: str) -> int:
    # str.isascii() is constant time in CPython: most English text skips the scan.
    return 0 if text.isascii() else len(_CJK.findall(text))


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- placeholders -----------------------------------------------------------------------------------
_FIELD_WORDS = r"answer|response|reply|question|version|critique|strengths?|weaknesses?|suggestions?|output|text|content"
_PLACEHOLDERS = [
    # [feature_1_2], [step_2_detail]: bracketed snake_case identifiers
    re.compile(r"\[[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)+\]"),
    # [Your Name], [Insert date here], [Company], [X]
    re.compile(r"\[(?:your|insert|enter|add|fill|name|date|company|placeholder|topic|location|x{1,3})\b[^\]\n]{0,40}\]", re.IGNORECASE),
    # {{topic}}, {product_name}
    re.compile(r"\{\{[^{}\n]{1,40}\}\}|\{[a-z]+_[a-z0-9_]+\}"),
    # <placeholder>, <insert answer>, <your text>
    re.compile(r"<(?:placeholder|insert[^<>\n]{0,30}|your[^<>\n]{0,30}|answer|question|improved[_ ]answer)>", re.IGNORECASE),
    # Improved_answer, new_response, answer_text: a field name leaking out of a template
    re.compile(rf"\b(?:improved|refined|new|final|revised|original|better|rewritten)_(?:{_FIELD_WORDS})\b", re.IGNORECASE),
    re.compile(rf"\b(?:{_FIELD_WORDS})_(?:text|here|placeholder|\d+)\b", re.IGNORECASE),
    re.compile(r"\blorem ipsum\b|\bTODO:|\bTBD\b|\bXXX+\b", re.IGNORECASE),
    # 【此处填写】, [在这里插入答案], XXX公司 / 某某某
    re.compile(r"[【\[][^】\]\n]{0,12}(?:此处|这里|在此)[^】\]\n]{0,12}[】\]]|[【\[](?:插入|填写|请填写)[^】\]\n]{0,16}[】\]]"),
]


#: Every pattern above but one needs one of these characters: text without any of them (most text) is
#: searched for the one that does not (``lorem ipsum``, ``TODO:``) alone.
_PLACEHOLDER_CHARS = "[{<_【"
_WORD_PLACEHOLDERS = [p for p in _PLACEHOLDERS if "lorem" in p.pattern]


def placeholder(text: str) -> Finding | None:
    """A template token left in the text (outside code)."""
    body = prose(text)
    patterns = _PLACEHOLDERS if any(ch in body for ch in _PLACEHOLDER_CHARS) else _WORD_PLACEHOLDERS
    for pattern in patterns:
        match = pattern.search(body)
        if match:
            return Finding("placeholder", f"template leftover {match.group(0)!r}")
    return None


# -- labels and headings ----------------------------------------------------------------------------
_LABEL_WORDS = re.compile(
    r"^(?:(?:the\s+)?(?:improved|refined|new|final|revised|better|rewritten|original|short|full)?\s*"
    r"(?:answer|response|reply|version|output|solution|result|text)s?|"
    r"(?:改进后?的?|修改后?的?|新的?|最终的?)?(?:回答|答案|回复|版本|输出))$",
    re.IGNORECASE,
)


def label_only(text: str) -> Finding | None:
    """The whole reply is a label (``Improved answer:``), a heading (``## Plan``) or a field name."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        return None
    line = lines[0]
    bare = line.strip("#*_`>\"'“”‘’ \t").strip()
    bare = re.sub(r"[:：]\s*$", "", bare).strip().replace("_", " ")
    if len(tokens(bare)) > 6 and not _CJK.search(bare):
        return None
    if _LABEL_WORDS.match(bare.strip(".!。")):
        return Finding("label_only", f"only a label: {_clip(line)!r}")
    if line.startswith("#") or (re.search(r"[:：]\s*$", line) and len(tokens(bare)) <= 6):
        return Finding("label_only", f"only a heading: {_clip(line)!r}")
    return None


# -- loops ------------------------------------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<=[.!?。！？；;])\s*|\n+")
_LIST_MARK = re.compile(r"^\s*(?:[-*+•]|\d+[.)、]|[a-z][.)])\s+")
#: A word this many times in a row is a stutter.
STUTTER = 6


def _stutter(words: list[str]) -> tuple[str, int] | None:
    """The first (non-Chinese) word repeated STUTTER times in a row, and how many times.

    Chinese repeats characters on purpose (哈哈哈, 谢谢谢谢). Neighbours are compared in C (``map``
    over ``operator.eq`` into bytes) and a run found with ``bytes.find``: several times faster than a
    Python loop over the words.
    """
    same = bytes(map(operator.eq, words, words[1:]))
    run = b"\x01" * (STUTTER - 1)
    at = same.find(run)
    while at >= 0:
        if not _CJK.match(words[at]):
            end = at + STUTTER - 1
            while end < len(same) and same[end]:
                end += 1
            return words[at], end - at + 1
        at = same.find(run, at + 1)
    return None


@functools.lru_cache(maxsize=32)
def _parts(body: str) -> tuple[str, ...]:
    # Cached: loop and meta_commentary both start from the sentences of the same prose.
    return tuple(_SENTENCE_END.split(body))


def loop(text: str) -> Finding | None:
    """A sentence repeated, a phrase repeated to fill the budget, or a word stuttering (outside code)."""
    body = prose(text)
    sentences = []
    parts = _parts(body)
    for part in parts if len(parts) >= 3 else ():  # fewer parts cannot hold three sentences
        part = _LIST_MARK.sub("", part).strip()
        if part.startswith("|"):  # table rows repeat their shape, not their content
            continue
        words = tokens(part)
        if len(words) >= 2:
            sentences.append(" ".join(words))
    if len(sentences) >= 3:
        counts = Counter(sentences)
        sentence, times = counts.most_common(1)[0]
        repeated = sum(n for n in counts.values() if n >= 2)
        # A refrain sung three times is a song; the same sentence four times making half the text is a loop.
        if (times >= 4 and repeated >= 0.5 * len(sentences)) or (times >= 3 and len(counts) <= 2):
            return Finding("loop", f"the sentence {_clip(sentence, 60)!r} appears {times} times")
    words = tokens(body)
    stutter = _stutter(words)
    if stutter is not None:
        return Finding("loop", f"the word {stutter[0]!r} {stutter[1]} times in a row")
    size = 4 if _cjk_count(body) < len(words) / 2 else 8
    if len(words) >= 10 * size:
        # zip over shifted lists builds the n-gram tuples in C.
        grams = Counter(zip(*(words[k:] for k in range(size))))
        distinct = len(grams) / max(1, len(words) - size + 1)
        gram, times = grams.most_common(1)[0]
        if distinct < 0.35 and times >= 6:
            phrase = ("" if size == 8 else " ").join(gram)
            return Finding("loop", f"the phrase {_clip(phrase, 60)!r} repeats {times} times ({distinct:.0%} distinct)")
    return None


# -- meta-commentary --------------------------------------------------------------------------------
_EDIT_NOUN = r"(?:answer|response|reply|version|edit|revision|rewrite|draft|text)"
_EDIT_ADJ = r"(?:new|improved|revised|updated|refined|edited|rewritten|final|above|original|previous|modified|current)"
_META = [
    re.compile(rf"^(?:the|this|my|our|that)\s+(?:{_EDIT_ADJ}\s+)*{_EDIT_NOUN}\s+(?:has|have|had|is|was|now|will|now\s+\w+|"
               r"includes?|adds?|provides?|addresses|contains|keeps|removes|focuses|offers|reads|remains)\b", re.IGNORECASE),
    re.compile(rf"^(?:this|that|it)\s+is\s+(?:a|an|the|my)\s+(?:{_EDIT_ADJ}\s+)*(?:{_EDIT_NOUN}|edit|improvement)\s+of\b", re.IGNORECASE),
    re.compile(rf"^(?:I|we)\s+(?:have\s+|'ve\s+)?(?:revised|rewritten|rewrote|improved|updated|edited|modified|refined|"
               rf"made|changed|added|removed|shortened|expanded)\b.*\b(?:{_EDIT_NOUN}|it)\b", re.IGNORECASE),
    re.compile(rf"^here(?:'s|\s+is)\s+(?:the|an|my|a)\s+(?:{_EDIT_ADJ}\s+)*{_EDIT_NOUN}\W*$", re.IGNORECASE),
    re.compile(rf"^in\s+this\s+(?:{_EDIT_ADJ}\s+)*{_EDIT_NOUN}\b", re.IGNORECASE),
    re.compile(r"^(?:改进后|修改后|优化后|新|这个|本|以上|上述)的?(?:回答|答案|版本|回复)(?:已经|已|更加|更|变得|包含|增加|补充|删除|去掉|采用)"),
    re.compile(r"^(?:我|我们)(?:已经|已)?(?:对[^，。]{0,12})?(?:修改|改进|重写|优化|润色|调整|精简|补充)了"),
    re.compile(r"^这(?:是|个是)(?:对)?(?:原|原始|原来|之前)?的?(?:回答|答案)?的?(?:新的?)?(?:修改|编辑|改进|优化)(?:版|版本)?"),
    re.compile(r"^(?:以下|下面)是(?:改进|修改|优化)后?的(?:回答|答案|版本)[:：。]?$"),
]
# One pattern tried once per sentence instead of nine: each of them is anchored at the start, and
# case-folding leaves the Chinese ones as they are.
_ANY_META = re.compile("|".join(f"(?:{p.pattern})" for p in _META), re.IGNORECASE)


def meta_commentary(text: str) -> Finding | None:
    """The reply talks about an edit instead of being the content: meta sentences and little else."""
    body = prose(text).strip()
    meta, rest = [], []
    for part in _parts(body):
        part = part.strip(" \t*_#>\"'“”")
        if not part:
            continue
        (meta if _ANY_META.match(part) else rest).append(part)
    if not meta:
        return None
    remaining = " ".join(rest)
    substance = _cjk_count(remaining) * 3 + len(re.findall(r"[A-Za-z0-9]", remaining))
    if substance < 80:
        return Finding("meta_commentary", f"talks about the edit instead of answering: {_clip(meta[0])!r}")
    return None


# -- comparisons ------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=32)
def _shingles(text: str) -> frozenset[tuple[str, ...]]:
    # Cached: a refinement is compared with the answer it replaces and with the question, and each
    # comparison may be made twice (see echo); tokenising is most of a detector's cost.
    words = tokens(text)
    size = 3 if _cjk_count(text) < len(words) / 2 else 4
    if len(words) < size:
        return frozenset({tuple(words)}) if words else frozenset()
    # zip over shifted lists builds the n-gram tuples in C.
    return frozenset(zip(*(words[k:] for k in range(size))))


@functools.lru_cache(maxsize=32)
def _joined(text: str) -> str:
    # Cached like _shingles: a question is compared with its leaf and with its whole tag path.
    return " ".join(tokens(text))


def similarity(a: str, b: str) -> float:
    """Jaccard similarity of word trigrams (character 4-grams for Chinese): 1.0 for the same text."""
    left, right = _shingles(a), _shingles(b)
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def echo(text: str, source: str, what: str, threshold: float = 0.85, reword: float | None = 0.5) -> Finding | None:
    """``text`` is (nearly) ``source`` again, or ``source`` with little added; with ``reword``, also a
    text no longer than ``source`` by a third that shares that much of it (None where a close edit is
    what was asked for: a rewrite of an answer)."""
    mine, theirs = _joined(text), _joined(source)
    if not mine or not theirs:
        return None
    same = similarity(text, source)
    if mine == theirs or same >= threshold:
        return Finding(f"echo_of_{what}", f"repeats the {what} ({same:.0%} the same)")
    if len(mine) <= len(theirs) * 1.1 and mine in theirs:
        return Finding(f"echo_of_{what}", f"is a piece of the {what}")
    # The source reworded a little ("is connected to" for "connects to") and nothing added.
    if reword is not None and len(mine) <= len(theirs) * 1.3 and same >= reword:
        return Finding(f"echo_of_{what}", f"rewords the {what} and adds nothing ({same:.0%} the same)")
    return None


_BREVITY = re.compile(
    r"\b(?:concise|shorter|shorten|brief|briefer|brevity|trim|cut|condense|too\s+long|verbose|wordy|succinct|tighten)\w*"
    r"|简洁|精简|简短|缩短|删减|太长|冗长|啰嗦|简明|压缩",
    re.IGNORECASE,
)


def collapse(new: str, old: str, critique: str = "", ratio: float = 0.4, min_old_chars: int = 200) -> Finding | None:
    """A rewrite far shorter than the answer it replaces, when the critique did not ask for brevity."""
    if len(old) < min_old_chars or len(new) >= ratio * len(old) or _BREVITY.search(critique):
        return None
    return Finding("collapse", f"{len(new)} characters where the previous version had {len(old)}")


_NOTHING = re.compile(r"^(?:n/?a|none|nothing|no|null|tbd|todo|-+|\.+|无|没有|暂无)$", re.IGNORECASE)


def thin(text: str, field: str, min_letters: int = 12) -> Finding | None:
    """A critique field with no substance: empty, a number, 'N/A', a word or two."""
    stripped = text.strip()
    letters = len(re.findall(r"[A-Za-z]", stripped)) + 3 * len(_CJK.findall(stripped))
    if _NOTHING.match(stripped.strip(" .。!")) or letters < min_letters or len(tokens(stripped)) < 3:
        return Finding("thin_critique", f"the {field} say nothing: {_clip(stripped) or '(empty)'!r}")
    return None


_LETTER = re.compile(r"[^\W\d_]")
_NUMBERED = re.compile(r"^\s*\d{1,2}[.)、]\s*(?!\d)\S")


def list_fragment(text: str) -> Finding | None:
    """A one-line request that opens with list numbering (``3. The new employee ...``): one item torn
    out of a list the model wrote, not a request a person would send. Multi-line text (steps, a
    numbered brief) passes."""
    stripped = text.strip()
    if "\n" not in stripped and _NUMBERED.match(stripped):
        return Finding("list_fragment", f"starts with list numbering, a piece of a list: {_clip(stripped)!r}")
    return None


def wordless(text: str) -> Finding | None:
    """Text without a single letter of any script: numbers, dates, punctuation (a small model's outline
    numbering or timestamps in place of a question). Code has letters, so it passes."""
    if text.strip() and _LETTER.search(text) is None:
        return Finding("no_words", f"no words, only numbers and symbols: {_clip(text)!r}")
    return None


def degenerate(text: str) -> Finding | None:
    """The checks that apply to any generated text: no words, placeholders, labels, loops, meta-commentary."""
    for check in (wordless, placeholder, label_only, loop, meta_commentary):
        finding = check(text)
        if finding is not None:
            return finding
    return None
