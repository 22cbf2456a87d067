"""Condor Refine, second half of a round: a new answer version written from the latest critique.

The refiner sees the question, the latest answer and the critique of this round, and writes the whole
improved answer between ``[Improved Answer Start]`` and ``[Improved Answer End]`` (or in the JSON
field ``improved_answer``). A forgotten end marker is fine; a reply with no marker at all is a
ParseError, because a preamble ("Here is the revised answer:") would otherwise end up in the data.

Record fields read: ``question``, ``language``, ``versions[-1].answer``, ``critiques`` (the entry of
this round, else the last one).
Field written: ``versions`` gains ``{"round", "answer", "finish_reason", "source": "refine"}``.
"""

from __future__ import annotations

import re
from typing import Any

from condor.llm.base import ChatRequest, Completion
from condor.stages.base import ParseError, Record, Stage
from condor.stages.markers import (
    SEP,
    bracketed,
    clean_body,
    extract_json,
    find_markers,
    has_content,
    json_text,
    lookup,
    read_either,
    strip_reasoning,
)
from condor.stages.prompting import language_of, question_of, render, repair_first, reply_text, stage_request, versions_of

_ADJECTIVE = r"(?:improved|revised|refined|better|new|final|updated)"
_ANSWER = rf"(?:{_ADJECTIVE}{SEP})?answer"
_ANSWER_ZH = r"改进后?的?(?:回答|答案)|(?:回答|答案)"
# A full start marker names the improved answer or says "start". A bare "[Answer]" or "【答案】" also
# appears inside answers (a Chinese exam answer: "【答案】B【解析】..."), so it opens a block only in a
# reply that has no full start marker, and never splits a block that is already open.
_START = bracketed(rf"{_ANSWER}{SEP}start|{_ADJECTIVE}{SEP}answer|(?:{_ANSWER_ZH}){SEP}开始|改进后?的?(?:回答|答案)")
_SHORT_START = bracketed(r"answer|回答|答案")
_END = bracketed(rf"{_ANSWER}{SEP}end|(?:{_ANSWER_ZH}){SEP}结束")
_PREAMBLE = re.compile(r"^[^\n]{0,200}[:：][ \t]*\n")

SCHEMA: dict[str, Any] = {
    "title": "refinement",
    "type": "object",
    # Not bounded above (a rewrite may be long); at least a sentence, so a grammar cannot stop at "".
    "properties": {"improved_answer": {"type": "string", "minLength": 20}},
    "required": ["improved_answer"],
    "additionalProperties": False,
}


class RefineStage(Stage):
    """Writes answer version ``round`` from version ``round - 1`` and the critique of round ``round``."""

    role = "refiner"
    version = "2"
    has_schema = True
    prompt_name = "refine"

    def __init__(self, round: int, max_tokens: int | None = None, temperature: float | None = None) -> None:
        if round < 1:
            raise ValueError(f"refinement rounds start at 1, got {round}")
        self.round = round
        self.name = f"refine_{round}"
        self.max_tokens = max_tokens
        self.temperature = temperature

    def _critique(self, record: Record) -> dict[str, Any]:
        critiques = record.get("critiques")
        if not isinstance(critiques, list) or not critiques:
            raise ValueError(f"record {record.get('id')!r} has no critique; run critique_{self.round} first")
        of_round = [c for c in critiques if c.get("round") == self.round]
        return of_round[-1] if of_round else critiques[-1]

    def requests(self, record: Record, *, structured: bool = False) -> list[ChatRequest]:
        language = language_of(record)
        critique = self._critique(record)
        none = render("refine", language, "none")
        block = render(
            "refine",
            language,
            "critique_block",
            **{name: (critique.get(name) or "").strip() or none for name in ("strengths", "weaknesses", "suggestions")},
        )
        user = render(
            "refine",
            language,
            "user",
            question=question_of(record),
            answer=versions_of(record)[-1]["answer"],
            critique=block,
            format=render("refine", language, "json_format" if structured else "text_format"),
        )
        return [
            stage_request(
                "refine", language, user, schema=SCHEMA, structured=structured,
                max_tokens=self.max_tokens, temperature=self.temperature,
            )
        ]

    def parse(self, record: Record, completions: list[Completion], *, structured: bool = False) -> list[Record]:
        text = strip_reasoning(reply_text(completions))
        answer = read_either(text, structured, read_text_answer, read_json_answer)
        version = {
            "round": self.round,
            "answer": answer,
            "finish_reason": completions[0].finish_reason,
            "source": "refine",
        }
        return [{**record, "versions": [*versions_of(record), version]}]

    def repair_requests(
        self, record: Record, completions: list[Completion], error: ParseError
    ) -> list[ChatRequest] | None:
        return repair_first(self, record, completions, error)


def _answer_blocks(text: str) -> tuple[list[str], bool]:
    """The cleaned blocks between start and end markers, and whether any start marker was seen.

    Inside an open block a bare "[Answer]" or "【答案】" is the answer's own text; only an end marker or
    a full start marker ends the block.
    """
    markers = find_markers(text, {"start": _START, "short": _SHORT_START, "end": _END})
    full = any(m.kind == "start" for m in markers)
    opener = "start" if full else "short"
    blocks: list[str] = []
    open_at: int | None = None
    seen_start = False
    for marker in markers:
        if open_at is None:
            if marker.kind == opener:
                open_at, seen_start = marker.end, True
        elif marker.kind == "end":
            blocks.append(clean_body(text[open_at : marker.start]))
            open_at = None
        elif marker.kind == "start":
            # A second full start marker: the model began again, and its earlier try is a block of its own.
            blocks.append(clean_body(text[open_at : marker.start]))
            open_at = marker.end
    if open_at is not None:
        blocks.append(clean_body(text[open_at:]))
    return [b for b in blocks if has_content(b)], seen_start


def read_text_answer(text: str) -> str:
    """The improved answer between its markers; the longest block when the model wrote several."""
    blocks, seen_start = _answer_blocks(text)
    if blocks:
        return max(blocks, key=len)
    if seen_start:
        raise ParseError("empty_answer", "the [Improved Answer Start] block is empty")
    ends = find_markers(text, {"end": _END})
    if ends:
        # The start marker was left out: take what precedes the end marker, minus a one-line preamble.
        answer = clean_body(_PREAMBLE.sub("", text[: ends[0].start].lstrip(), count=1))
        if has_content(answer):
            return answer
        raise ParseError("empty_answer", "nothing before [Improved Answer End]")
    raise ParseError("missing_markers", "no [Improved Answer Start] ... [Improved Answer End] block found")


def read_json_answer(text: str) -> str:
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ParseError("invalid_json", f"expected a JSON object with improved_answer, got {type(data).__name__}")
    value = lookup(data, "improved_answer", "improvedanswer", "answer", "revised_answer", "改进后的回答", "回答")
    answer = json_text(value)
    if not has_content(answer):
        raise ParseError("empty_answer", "improved_answer is missing or empty")
    return answer
