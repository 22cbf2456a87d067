"""Cheap, model-free checks that drop unusable questions and answers, each with a reason and a detail.

Checks, in order: empty text; too short; too long; cut off by the token limit (``finish_reason ==
"length"``); a refusal (English and Chinese phrasings, answers only); written in the other language
than the record's. Each returns a :class:`QualityIssue` (``reason`` slug, human ``detail``) so the
executor can record ``Rejection(stage="filter", reason=..., detail=...)``.

Length: "too short" counts a CJK character as three, since one Chinese character carries about as much
as three Latin letters and ``min_chars`` would otherwise reject ordinary short Chinese questions;
"too long" counts raw characters, since it guards against runaway generations, not thin content.

Language: :func:`detect_language` tells English from Chinese by the share of Han characters among Han
characters plus Latin words, after removing code blocks, inline code, URLs, formulas and code-like
lines. It answers ``None`` (unknown) for short or mixed text, and unknown never rejects: losing a good
code-heavy answer costs more than keeping a rare mislabelled one. Other languages are out of scope.

Deliberately left out: anything that needs a model (helpfulness, factuality, toxicity).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple


class QualityIssue(NamedTuple):
    reason: str
    detail: str


#: Opening phrases of refusals, in our own curated wording. They are matched against the first
#: REFUSAL_WINDOW characters only: a refusal comes first, while a helpful answer may well say
#: "you can't" somewhere in its body.
REFUSAL_WINDOW = 300
_CANNOT = (
    r"(?:can't|cannot|can\s+not|won't|will\s+not|am\s+unable\s+to|'m\s+unable\s+to|am\s+not\s+able\s+to"
    r"|'m\s+not\s+able\s+to|must\s+decline|have\s+to\s+decline)"
)
# "I'm sorry to hear you can't sleep" is sympathy, not a refusal: the one who cannot must be "I".
_REFUSALS_EN = [
    rf"\b(?:I'm\s+|I\s+am\s+)?(?:so\s+|really\s+|very\s+|truly\s+)?(?:sorry|afraid)[,.!]?\s+(?:but\s+)?I\s+{_CANNOT}",
    rf"^\W*(?:unfortunately,?\s+)?I\s+{_CANNOT}\s+(?:help|assist|provide|comply|fulfil|fulfill|answer|create|write"
    r"|generate|do\s+that|support|engage|discuss|give|produce|share|complete|offer)",
    r"\bas\s+an\s+ai(?:\s+language\s+model|\s+assistant|\s+model)?,?\s+I\s+(?:can't|cannot|am\s+unable|'m\s+unable"
    r"|am\s+not\s+able|don't\s+have\s+the\s+ability|do\s+not\s+have\s+the\s+ability)",
    r"\bI\s+(?:must|have\s+to|need\s+to)\s+(?:respectfully\s+)?(?:decline|refuse)\b",
    r"\b(?:this|that|your)\s+request\s+(?:is|goes)\s+against\b",
]
# Likewise "很遗憾听到你无法入睡" is sympathy: the refusing subject must be 我.
_REFUSALS_ZH = [
    r"(?:很抱歉|抱歉|对不起|不好意思)[^。！？\n]{0,15}?我们?(?:无法|不能|不便|没办法|恕难|不可以)",
    r"^\W*我(?:无法|不能|不可以|没办法|不便)(?:为你|为您|帮你|帮您)?(?:提供|回答|协助|帮助|满足|完成|参与|讨论|生成|创作|回应|处理)",
    r"作为(?:一个|一名)?(?:AI|人工智能)(?:语言模型|助手|模型)?[，,]?\s*我(?:无法|不能)",
    r"(?:请求|要求|问题)[^。\n]{0,12}(?:违反|不符合)[^。\n]{0,12}(?:政策|规定|准则|原则)",
]
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in _REFUSALS_EN + _REFUSALS_ZH), re.IGNORECASE | re.MULTILINE)


def refusal_phrase(text: str) -> str | None:
    """The refusal phrase that opens ``text``, or None."""
    head = text[:REFUSAL_WINDOW].replace("\u2019", "'").replace("\u2018", "'")
    match = _REFUSAL.search(head)
    return match.group(0).strip() if match else None


_FENCED = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+")
_FORMULA = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$|\\\[.*?\\\]|\\\(.*?\\\)", re.DOTALL)
_CODE_CHARS = set("{}[]();=<>_/\\|#$&*+^%~`@")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_LATIN_WORD = re.compile(r"[A-Za-z\u00c0-\u024f]+")
#: Below this many units (Han characters plus Latin words) the language is not guessed.
MIN_LANGUAGE_UNITS = 12
ZH_SHARE = 0.6
EN_SHARE = 0.1


def _prose(text: str) -> str:
    """Text with code, URLs and formulas removed, which are in no natural language."""
    text = _FENCED.sub(" ", text)
    text = _INLINE_CODE.sub(" ", text)
    text = _URL.sub(" ", text)
    text = _FORMULA.sub(" ", text)
    kept = []
    for line in text.splitlines():
        visible = [ch for ch in line if not ch.isspace()]
        if visible and sum(ch in _CODE_CHARS for ch in visible) / len(visible) >= 0.15:
            continue  # a line of unfenced code: identifiers would count as English words
        kept.append(line)
    return "\n".join(kept)


def detect_language(text: str) -> str | None:
    """``"zh"``, ``"en"``, or None when the text is too short, too mixed or mostly code to tell."""
    prose = _prose(text)
    han = len(_HAN.findall(prose))
    words = len(_LATIN_WORD.findall(prose))
    units = han + words
    if units < MIN_LANGUAGE_UNITS:
        return None
    share = han / units
    if share >= ZH_SHARE:
        return "zh"
    if share <= EN_SHARE:
        return "en"
    return None


def _weighted_length(text: str) -> int:
    return len(text) + 2 * len(_HAN.findall(text))


def check_text(
    text: Any,
    *,
    language: str | None = None,
    finish_reason: str | None = None,
    min_chars: int = 10,
    max_chars: int = 20000,
    refusals: bool = True,
) -> QualityIssue | None:
    """The first problem with ``text``, or None when it passes every check."""
    if not isinstance(text, str) or not text.strip():
        return QualityIssue("empty", "the text is empty")
    stripped = text.strip()
    if _weighted_length(stripped) < min_chars:
        return QualityIssue("too_short", f"{len(stripped)} characters, below the minimum of {min_chars}")
    if len(stripped) > max_chars:
        return QualityIssue("too_long", f"{len(stripped)} characters, above the maximum of {max_chars}")
    if finish_reason == "length":
        return QualityIssue("truncated", "generation stopped at the token limit, so the text is cut off")
    if refusals:
        phrase = refusal_phrase(stripped)
        if phrase:
            return QualityIssue("refusal", f"starts with a refusal: {phrase[:80]!r}")
    if language in ("en", "zh"):
        detected = detect_language(stripped)
        if detected is not None and detected != language:
            names = {"en": "English", "zh": "Chinese"}
            return QualityIssue("wrong_language", f"written in {names[detected]}, but the record's language is {names[language]}")
    return None


@dataclass(frozen=True)
class QualityFilter:
    """The checks with a run's limits, applied to the question or to the final answer of a record.

    Reasons are prefixed with the field: ``question_too_short``, ``answer_refusal``,
    ``answer_wrong_language``.
    """

    min_chars: int = 10
    max_chars: int = 20000
    check_language: bool = True

    @classmethod
    def from_config(cls, pipeline: Any) -> "QualityFilter":
        """From a :class:`condor.config.PipelineConfig` (its ``min_chars`` and ``max_chars``)."""
        return cls(min_chars=pipeline.min_chars, max_chars=pipeline.max_chars)

    def _language(self, record: dict[str, Any]) -> str | None:
        return record.get("language") if self.check_language else None

    def question_issue(self, record: dict[str, Any]) -> QualityIssue | None:
        # Refusal phrases are not checked in questions: "I'm sorry, but I can't decide..." is a fine
        # everyday question, and a question writer that refuses rarely produces the markers anyway.
        issue = check_text(
            record.get("question"),
            language=self._language(record),
            min_chars=self.min_chars,
            max_chars=self.max_chars,
            refusals=False,
        )
        return QualityIssue(f"question_{issue.reason}", f"question: {issue.detail}") if issue else None

    def answer_issue(self, record: dict[str, Any]) -> QualityIssue | None:
        """Checks the chosen version when one was selected, else the latest version."""
        versions = record.get("versions") or []
        chosen = record.get("chosen") or {}
        index = chosen.get("version", len(versions) - 1) if versions else None
        version = versions[index] if index is not None and 0 <= index < len(versions) else {}
        text = record.get("answer") if "answer" in record else version.get("answer")
        issue = check_text(
            text,
            language=self._language(record),
            finish_reason=version.get("finish_reason"),
            min_chars=self.min_chars,
            max_chars=self.max_chars,
        )
        return QualityIssue(f"answer_{issue.reason}", f"answer: {issue.detail}") if issue else None
