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


#: Only this many leading characters are searched for a refusal.
REFUSAL_WINDOW = 300
#: Opening phrases of refusals, in our own curated wording. A refusal is the very first thing a refusing
#: model says, so every pattern is anchored at the start of the reply: a helpful answer may say "you
#: can't", a letter may say "I'm sorry, but I can't attend" after its salutation, a poem "I can't help
#: but...". Each pattern also needs the refused act (help, provide, answer...) next to the "cannot", so
#: "I'm sorry, but I can't attend the meeting" is a letter, not a refusal.
_I = r"I(?:\s+am|'m)"
_CANNOT = (
    rf"(?:I\s+(?:can't|cannot|can\s+not|won't|will\s+not)(?:\s+be\s+able\s+to)?|{_I}\s+(?:unable|not\s+able)\s+to"
    r"|I\s+(?:must|have\s+to|need\s+to)\s+(?:respectfully\s+)?decline\s+to)"
)
# "help but" is "I can't help but watch the tide", which is no refusal.
_ACT = (
    r"(?:help(?!\s+but\b)|assist|provide|comply|fulfil|fulfill|answer|create|write|generate|do\s+that|support|engage"
    r"|discuss|produce|share|complete|offer|respond|give\s+(?:you\s+)?(?:advice|information|instructions))\b"
)
_SORRY = rf"(?:{_I}\s+)?(?:so\s+|really\s+|very\s+|truly\s+)?(?:sorry|afraid)[,.!]?\s+(?:but\s+)?"
# Refusals that sound like a model, not like a person: these are checked for every task type.
_REFUSALS_AI = [
    rf"^\W*(?:{_SORRY})?(?:unfortunately,?\s+)?{_CANNOT}\s+(?:help|assist)\s+(?:you\s+)?with\s+(?:that|this|your)\s+(?:request|question|task)",
    r"^\W*as\s+an\s+ai(?:\s+language\s+model|\s+assistant|\s+model)?,?\s+(?:I\s+(?:can't|cannot|won't)|"
    rf"{_I}\s+(?:unable|not\s+able)|I\s+(?:don't|do\s+not)\s+have\s+the\s+ability)",
    r"^\W*I\s+(?:must|have\s+to|need\s+to)\s+(?:respectfully\s+)?(?:decline|refuse)\s+(?:this|that|your)\s+request",
    r"^\W*作为(?:一个|一名)?(?:AI|人工智能)(?:语言模型|助手|模型)?[，,]?\s*我(?:无法|不能)",
    r"^\W*(?:很抱歉|抱歉|对不起)?[，,]?\s*(?:你|您)的(?:请求|问题)[^。\n]{0,12}(?:违反|不符合)[^。\n]{0,12}(?:政策|准则|使用规范|内容规范)",
]
# Refusals in ordinary words: a shop clerk in a role play or a character in a story says these too,
# so they are not checked for those task types (see RELAXED_TASKS).
_REFUSALS_PLAIN = [
    rf"^\W*{_SORRY}{_CANNOT}\s+{_ACT}",
    rf"^\W*(?:unfortunately,?\s+)?{_CANNOT}\s+{_ACT}",
    r"^\W*(?:非常|十分|真的)?(?:很抱歉|抱歉|对不起|不好意思)[^。！？\n]{0,15}?我们?(?:无法|不能|不便|没办法|恕难|不可以)"
    r"(?:为你|为您|帮你|帮您|向你|向您)?(?:提供|回答|协助|帮助|满足|完成|参与|讨论|生成|创作|回应|处理)",
    r"^\W*我(?:无法|不能|不可以|没办法|不便)(?:为你|为您|帮你|帮您)?(?:提供|回答|协助|帮助|满足|完成|参与|讨论|生成|创作|回应|处理)",
]
_REFUSAL_AI = re.compile("|".join(f"(?:{p})" for p in _REFUSALS_AI), re.IGNORECASE)
_REFUSAL = re.compile("|".join(f"(?:{p})" for p in _REFUSALS_AI + _REFUSALS_PLAIN), re.IGNORECASE)
#: Task types whose answers speak in a character's voice (a clerk, a letter writer, a poem's "I").
RELAXED_TASKS = frozenset({"role_playing", "creation"})


def refusal_phrase(text: str, task: str | None = None) -> str | None:
    """The refusal phrase that opens ``text``, or None; ``task`` relaxes the check for RELAXED_TASKS."""
    head = text[:REFUSAL_WINDOW].replace("\u2019", "'").replace("\u2018", "'").lstrip()
    pattern = _REFUSAL_AI if task in RELAXED_TASKS else _REFUSAL
    match = pattern.search(head)
    return match.group(0).strip() if match else None


_FENCED = re.compile(r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)", re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+")
# A formula may not contain its own opener: otherwise every unclosed "\(" scans to the end of the
# text, which is quadratic on a long reply full of them.
_FORMULA = re.compile(
    r"\$\$.*?\$\$|\$[^$\n]*\$|\\\[(?:[^\\]|\\(?!\[))*?\\\]|\\\((?:[^\\]|\\(?!\())*?\\\)", re.DOTALL
)
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
    task: str | None = None,
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
        phrase = refusal_phrase(stripped, task)
        if phrase:
            return QualityIssue("refusal", f"starts with a refusal: {phrase[:80]!r}")
    if language in ("en", "zh"):
        detected = detect_language(stripped)
        if detected is not None and detected != language:
            names = {"en": "English", "zh": "Chinese"}
            return QualityIssue("wrong_language", f"written in {names[detected]}, but the record's language is {names[language]}")
    return None


#: A question that asks for a translation rightly gets an answer in the other language.
_TRANSLATE = re.compile(r"translat|译成|译为|翻译", re.IGNORECASE)
#: Material processing includes translating, summarising foreign material and the like, and its
#: question carries the material, in whichever language it was written.
_MIXED_LANGUAGE_TASKS = frozenset({"material_processing"})


def _translates(record: dict[str, Any]) -> bool:
    """Whether the record's text may rightly be in the other language, so the language check is skipped."""
    question = record.get("question")
    return record.get("task") in _MIXED_LANGUAGE_TASKS or (isinstance(question, str) and bool(_TRANSLATE.search(question)))


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
        if not self.check_language or _translates(record):
            return None
        return record.get("language")

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
            task=record.get("task"),
        )
        return QualityIssue(f"answer_{issue.reason}", f"answer: {issue.detail}") if issue else None
