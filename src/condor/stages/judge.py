"""Scores for every answer version of a record, so that ``select --best`` can pick one.

Each version is graded on its own, in its own request (the judge never sees two versions side by side,
which keeps position bias and "the later one must be better" out of the score). The judge writes a
short reason first and the score last, ``[Reason Start]...[Reason End]`` then ``[Score] 7``, or JSON
``{"reason": ..., "score": 7}``. The score is read from the ``[Score]`` marker when there is one, else
from the last "Score: 7", "7/10" or "7 out of 10" (评分：7, 7 分) in the reply; decimals are rounded
half up; anything outside 1..10 is a ParseError.

Record fields read: ``question``, ``language``, ``versions[*].answer``.
Field written: ``scores``, one ``{"version", "score", "reason"}`` per version, replacing any earlier list.
"""

from __future__ import annotations

import math
import re
from typing import Any

from condor.llm.base import ChatRequest, Completion
from condor.stages.base import ParseError, Record, Stage
from condor.stages.markers import (
    SEP,
    bracketed,
    clean_body,
    extract_json,
    json_text,
    lookup,
    read_either,
    read_sections,
    strip_reasoning,
)
from condor.stages.prompting import chat, language_of, question_of, render, repair_request, versions_of

#: Reasons are for people reading records; a judge that writes an essay is cut here.
MAX_REASON_CHARS = 1000
_NUMBER = r"(\d{1,3}(?:\.\d+)?)"
#: What may sit between a score label and its number: spaces, bold, a colon, an angle bracket.
_GLUE = r"[ \t*_:：=<]{0,12}"
#: After a [Score] marker the number may also sit on the next line or in brackets: "[Score]\n8", "[Score] [8]".
_MARKER_GLUE = r"[\s*_:：=<\[【(（]{0,12}"
_SCORE_WORDS = r"(?:final[ \t]+)?(?:overall[ \t]+)?(?:score|rating|grade|评分|分数|得分|打分|最终得分)"
_SCORE_MARKER = re.compile(
    bracketed(rf"{_SCORE_WORDS}(?:{SEP}start)?") + rf"{_MARKER_GLUE}{_NUMBER}",
    re.IGNORECASE,
)
_SCORE_PHRASES = [
    re.compile(rf"(?<![a-z]){_SCORE_WORDS}{_GLUE}(?:(?:is|of|为|是){_GLUE})?{_NUMBER}", re.IGNORECASE),
    re.compile(rf"{_NUMBER}[ \t]*(?:/|out[ \t]+of)[ \t]*10(?!\d)", re.IGNORECASE),
    re.compile(rf"(?:给|打|评)[出为]?[ \t]*{_NUMBER}[ \t]*分"),
]
#: A score talked about rather than given: "a score of 9 would need...", "a 10 requires...", "要得到9分需要".
_HYPOTHETICAL_BEFORE = re.compile(r"(?:\b(?:an?|would|could|get|earn|deserve|reach)[ \t]+\S*[ \t]*|要|才能|若|如果)$", re.IGNORECASE)
_HYPOTHETICAL_AFTER = re.compile(
    r"^[^.\n。]{0,40}?\b(?:would|could|might|requires?|needs?|needed)\b|^[^。\n]{0,20}?(?:需要|才能|要求)", re.IGNORECASE
)
_BARE_NUMBER = re.compile(rf"^\W*{_NUMBER}\W*$")
_REASON_START = {"reason": bracketed(rf"(?:reason|justification|explanation|理由|原因)(?:{SEP}(?:start|开始))?")}
_REASON_END = {"reason": bracketed(rf"(?:reason|justification|explanation|理由|原因){SEP}(?:end|结束)")}
_SCORE_LINE = re.compile(bracketed(_SCORE_WORDS) + r".*$", re.IGNORECASE | re.MULTILINE)

SCHEMA: dict[str, Any] = {
    "title": "grade",
    "type": "object",
    "properties": {
        "reason": {"type": "string", "minLength": 10, "maxLength": 400},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
    },
    "required": ["reason", "score"],
    "additionalProperties": False,
}


class JudgeStage(Stage):
    """Grades each answer version of a record from 1 to 10, one request per version."""

    name = "judge"
    version = "2"
    role = "judge"
    has_schema = True

    def __init__(self, max_tokens: int | None = None, temperature: float | None = None) -> None:
        self.max_tokens = max_tokens
        self.temperature = temperature

    def requests(self, record: Record, *, structured: bool = False) -> list[ChatRequest]:
        language = language_of(record)
        question = question_of(record)
        system = render("judge", language, "system")
        form = render("judge", language, "json_format" if structured else "text_format")
        return [
            ChatRequest(
                messages=chat(system, render("judge", language, "user", question=question, answer=v["answer"], format=form)),
                max_tokens=self.max_tokens,
                temperature=self.temperature,
                json_schema=SCHEMA if structured else None,
            )
            for v in versions_of(record)
        ]

    def parse(self, record: Record, completions: list[Completion], *, structured: bool = False) -> list[Record]:
        versions = versions_of(record)
        if len(completions) != len(versions):
            raise ValueError(f"judge got {len(completions)} completions for {len(versions)} versions")
        scores = []
        for index, completion in enumerate(completions):
            try:
                score, reason = read_grade(completion.text, structured)
            except ParseError as exc:
                raise ParseError(exc.reason, f"version {index}: {exc.detail}") from None
            scores.append({"version": index, "score": score, "reason": reason})
        return [{**record, "scores": scores}]

    def repair_requests(
        self, record: Record, completions: list[Completion], error: ParseError
    ) -> list[ChatRequest] | None:
        # One request per version again: versions whose grade was readable are asked exactly as before
        # (a cache hit when the run has a cache), the others get a repair turn.
        language = language_of(record)
        out = []
        for request, completion in zip(self.requests(record), completions, strict=True):
            try:
                read_grade(completion.text, structured=False)
            except ParseError as exc:
                if completion.text is not None:
                    request = repair_request(request, completion.text, exc, "judge", language)
            out.append(request)
        return out


def read_grade(text: str | None, structured: bool = False) -> tuple[int, str]:
    """The (score, reason) of one judge reply; JSON first when ``structured``, else the text layout."""
    if text is None:
        raise ParseError("no_output", "the completion has no text")
    return read_either(strip_reasoning(text), structured, _read_text_grade, _read_json_grade)


def _to_score(raw: Any) -> int:
    if isinstance(raw, bool) or raw is None:
        raise ParseError("missing_score", "no score given")
    try:
        value = float(str(raw).strip())
    except ValueError:
        raise ParseError("missing_score", f"score {str(raw)[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise ParseError("score_out_of_range", f"score {value} is not between 1 and 10")
    score = math.floor(value + 0.5)
    if not 1 <= score <= 10:
        raise ParseError("score_out_of_range", f"score {str(raw)[:40]} is not between 1 and 10")
    return score


def _own_line(text: str, match: re.Match[str]) -> bool:
    """Whether the match is all there is on its line, apart from bold, brackets and punctuation."""
    line_start = text.rfind("\n", 0, match.start()) + 1
    line_end = text.find("\n", match.end())
    line_end = len(text) if line_end == -1 else line_end
    rest = text[line_start : match.start()] + text[match.end() : line_end]
    return not any(ch.isalnum() for ch in rest)


def _hypothetical(text: str, match: re.Match[str]) -> bool:
    before = text[max(0, match.start() - 30) : match.start()]
    after = text[match.end() : match.end() + 60]
    return bool(_HYPOTHETICAL_BEFORE.search(before) or _HYPOTHETICAL_AFTER.search(after))


def _read_text_grade(text: str) -> tuple[int, str]:
    matches = list(_SCORE_MARKER.finditer(text))
    if not matches:
        phrases = sorted((m for p in _SCORE_PHRASES for m in p.finditer(text)), key=lambda m: m.start())
        # Judges mention other scores ("a score of 9 would need sources") before or after the verdict:
        # a score alone on its line is the verdict, else the last one not talked about hypothetically.
        matches = [m for m in phrases if _own_line(text, m)] or [m for m in phrases if not _hypothetical(text, m)] or phrases
    if not matches:
        matches = list(_BARE_NUMBER.finditer(text.strip()))
    if not matches:
        raise ParseError("missing_score", "no [Score] marker and no recognisable score in the reply")
    # The last score wins among the candidates left: the verdict comes at the end.
    score = _to_score(matches[-1].group(1))
    reason = read_sections(text, _REASON_START, _REASON_END).get("reason") or clean_body(_SCORE_LINE.sub("", text))
    return score, reason[:MAX_REASON_CHARS]


def _read_json_grade(text: str) -> tuple[int, str]:
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ParseError("invalid_json", f"expected a JSON object with score and reason, got {type(data).__name__}")
    score = _to_score(lookup(data, "score", "rating", "grade", "评分", "分数"))
    reason = json_text(lookup(data, "reason", "justification", "explanation", "理由"))
    return score, reason[:MAX_REASON_CHARS]
