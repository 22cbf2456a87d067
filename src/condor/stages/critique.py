"""Condor Refine, first half of a round: a critique of the latest answer version.

The critic lists strengths, weaknesses and suggestions in three marked blocks (or three JSON fields).
Replies are read tolerantly: markers in any case, width or plural, a missing end marker, one block per
point, or plain headings ("Weaknesses:", "不足：") when the markers were left out entirely. A critique
with neither weaknesses nor suggestions gives the refiner nothing to act on and is a ParseError.

Record fields read: ``question``, ``language``, ``versions[-1].answer``.
Field written: ``critiques`` gains ``{"round", "strengths", "weaknesses", "suggestions"}``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from condor.llm.base import ChatRequest, Completion
from condor.stages.base import ParseError, Record, Stage
from condor.stages.markers import (
    SEP,
    bracketed,
    extract_json,
    heading,
    json_text,
    lookup,
    read_either,
    read_sections,
    strip_reasoning,
)
from condor.stages.prompting import LANGUAGES, language_of, question_of, render, repair_first, reply_text, stage_request, versions_of

SECTIONS = ("strengths", "weaknesses", "suggestions")
_WORDS = {
    "strengths": r"strengths?|strong[ \t]+points?|pros|positives|优点|优势|亮点|长处|可取之处",
    "weaknesses": (
        r"weakness(?:es)?|weak[ \t]+points?|cons|issues|problems|shortcomings|areas?[ \t]+for[ \t]+improvement"
        r"|缺点|不足之处|不足|问题|弱点|短处|待改进之处"
    ),
    "suggestions": r"suggestions?|improvements?|recommendations?|建议|改进建议|改进意见",
}
_STARTS = {name: bracketed(rf"(?:{words})(?:{SEP}(?:start|开始))?") for name, words in _WORDS.items()}
_ENDS = {name: bracketed(rf"(?:{words}){SEP}(?:end|结束)") for name, words in _WORDS.items()}
_HEADINGS = {
    name: heading(rf"(?:{words})(?:{SEP}(?:for{SEP}improvement|to{SEP}improve))?") for name, words in _WORDS.items()
}

SCHEMA: dict[str, Any] = {
    "title": "critique",
    "type": "object",
    # Bounded so that constrained decoding finishes the JSON within a modest max_tokens, and at least a
    # short sentence each, so that a grammar cannot close a field after "1".
    "properties": {name: {"type": "string", "minLength": 15, "maxLength": 700} for name in SECTIONS},
    "required": list(SECTIONS),
    "additionalProperties": False,
}


class CritiqueStage(Stage):
    """Critiques the latest answer version in refinement round ``round`` (1 for the first)."""

    role = "critic"
    version = "2"
    has_schema = True
    prompt_name = "critique"

    def __init__(self, round: int, max_tokens: int | None = None, temperature: float | None = None) -> None:
        if round < 1:
            raise ValueError(f"critique rounds start at 1, got {round}")
        self.round = round
        self.name = f"critique_{round}"
        self.max_tokens = max_tokens
        self.temperature = temperature

    def requests(self, record: Record, *, structured: bool = False) -> list[ChatRequest]:
        language = language_of(record)
        user = render(
            "critique",
            language,
            "user",
            question=question_of(record),
            answer=versions_of(record)[-1]["answer"],
            format=render("critique", language, "json_format" if structured else "text_format"),
        )
        return [
            stage_request(
                "critique", language, user, schema=SCHEMA, structured=structured,
                max_tokens=self.max_tokens, temperature=self.temperature,
            )
        ]

    def parse(self, record: Record, completions: list[Completion], *, structured: bool = False) -> list[Record]:
        text = strip_reasoning(reply_text(completions))
        found = read_either(text, structured, read_text_critique, read_json_critique)
        critique = {"round": self.round, **found}
        return [{**record, "critiques": [*record.get("critiques", []), critique]}]

    def repair_requests(
        self, record: Record, completions: list[Completion], error: ParseError
    ) -> list[ChatRequest] | None:
        return repair_first(self, record, completions, error)


def read_text_critique(text: str) -> dict[str, str]:
    """Strengths, weaknesses and suggestions from marked blocks, or from headings when there are none."""
    sections = read_sections(text, _STARTS, _ENDS)
    if not sections:
        sections = read_sections(text, _HEADINGS, {})
    if not sections:
        raise ParseError("missing_sections", "no [Strength Start]/[Weakness Start]/[Suggestion Start] blocks found")
    return _usable({name: sections.get(name, "") for name in SECTIONS})


def read_json_critique(text: str) -> dict[str, str]:
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ParseError("invalid_json", f"expected a JSON object with strengths, weaknesses and suggestions, got {type(data).__name__}")
    found = {
        "strengths": json_text(lookup(data, "strengths", "strength", "优点")),
        "weaknesses": json_text(lookup(data, "weaknesses", "weakness", "不足", "缺点")),
        "suggestions": json_text(lookup(data, "suggestions", "suggestion", "建议")),
    }
    return _usable(found)


#: Lines that say there is nothing to say: they give the refiner nothing to act on.
_NONE_WORDS = {
    "none", "n/a", "na", "nil", "nothing", "no weaknesses", "no suggestions", "not applicable", "none found",
    "无", "没有", "暂无", "无明显不足", "没有不足", "没有建议", "无建议",
}
_PLACEHOLDER_BLOCK = re.compile(r"\[[A-Za-z ]+ Start\](.*?)\[[A-Za-z ]+ End\]")


def _folded(line: str) -> str:
    """A line compared loosely: bullets, case, surrounding punctuation and whitespace removed."""
    line = re.sub(r"^[\s\-*•·\d.)]+", "", line)
    return re.sub(r"[\s.。!！:：;；,，]+$", "", " ".join(line.casefold().split()))


@lru_cache(maxsize=1)
def _placeholders() -> frozenset[str]:
    """The layout's own filler text in both languages ("what is wrong, missing or weak"), which a model
    that echoes the layout writes back instead of a critique."""
    out = set()
    for language in LANGUAGES:
        out.update(_folded(m) for m in _PLACEHOLDER_BLOCK.findall(render("critique", language, "text_format")))
    return frozenset(out)


def _meaningful(text: str) -> str:
    """``text`` without lines that are only a none-word or an echo of the layout's placeholder."""
    junk = _NONE_WORDS | _placeholders()
    return "\n".join(line for line in text.split("\n") if _folded(line) not in junk).strip()


def _usable(found: dict[str, str]) -> dict[str, str]:
    found = {name: _meaningful(text) for name, text in found.items()}
    if not any(ch.isalnum() for ch in found["weaknesses"] + found["suggestions"]):
        raise ParseError("empty_critique", "the critique names no weakness and no suggestion")
    return found
