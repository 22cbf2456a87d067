"""Pairwise comparison of two answers to one question, asked in both orders.

Judges favour whichever answer they read first (or second) far more often than chance, so every pair is
asked twice: once with answer ``a`` shown as "answer 1", once with ``b`` shown as "answer 1". A side
wins only when both orders name it; any disagreement, a tie in either order included, is a tie. How
often the two orders agree is the judge's position consistency, reported by :mod:`condor.judge.stats`.

The judge writes a short comparison and then the verdict, ``[Reason Start]...[Reason End]`` and
``[Verdict] 1`` (``2``, ``tie``), or JSON ``{"reason": ..., "verdict": "1"}``. The verdict is read from
the ``[Verdict]`` marker when there is one, else from the last "Verdict: answer 2" (结论：回答2) phrase,
else from a reply that is nothing but a verdict; anything else is a ParseError, since guessing a
winner from prose would put the parser's bias in place of the judge's.

Record fields read: ``question``, ``language``, ``pair`` (``{"a": text, "b": text}``).
Field written: ``pairwise``: ``{"verdicts": [{"first", "winner", "reason"}, ...], "winner", "consistent"}``
where ``first`` is the side shown first and ``winner`` is ``"a"``, ``"b"`` or ``"tie"``.
This module is pure: building the pairs and running the requests belong to :mod:`condor.judge`.
"""

from __future__ import annotations

import re
from typing import Any

from condor.llm.base import ChatRequest, Completion
from condor.stages.base import ParseError, Record, Stage
from condor.stages.markers import (
    bracketed,
    clean_body,
    extract_json,
    json_text,
    lookup,
    read_either,
    read_sections,
    strip_reasoning,
)
from condor.stages.prompting import chat, language_of, question_of, render, repair_request

MAX_REASON_CHARS = 1000
#: The two orders in which a pair is shown: the side shown as "answer 1", then the one shown as "answer 2".
ORDERS = (("a", "b"), ("b", "a"))

_VALUE = (
    r"(?:(?:answer|response|回答|答案)[ \t]*(?:no\.?[ \t]*|#)?)?(?P<num>[12])(?!\d|\.\d)"
    r"|(?P<word>tie|draw|equal(?:ly good)?|平局|平手|相当|一样好)"
)
_VERDICT_WORDS = r"(?:final[ \t]+)?(?:verdict|winner|decision|judg(?:e)?ment|better[ \t]+answer|结论|判决|裁决|胜者)"
_MARKER_GLUE = r"[\s*_:：=<\[【(（]{0,12}"
_VERDICT_MARKER = re.compile(bracketed(_VERDICT_WORDS) + _MARKER_GLUE + rf"(?:{_VALUE})", re.IGNORECASE)
_VERDICT_PHRASE = re.compile(
    rf"(?<![a-z]){_VERDICT_WORDS}[ \t*_]*(?:[:：=]|is|为|是)[ \t*_:：]*(?:{_VALUE})", re.IGNORECASE
)
_BARE = re.compile(rf"^[\W_]*(?:{_VALUE})[\W_]*$", re.IGNORECASE)
_REASON_START = {"reason": bracketed(r"(?:reason|justification|explanation|理由|原因)(?:[ \t_\-]*(?:start|开始))?")}
_REASON_END = {"reason": bracketed(r"(?:reason|justification|explanation|理由|原因)[ \t_\-]*(?:end|结束)")}
_VERDICT_LINE = re.compile(bracketed(_VERDICT_WORDS) + r".*$", re.IGNORECASE | re.MULTILINE)

SCHEMA: dict[str, Any] = {
    "title": "pairwise_verdict",
    "type": "object",
    "properties": {
        "reason": {"type": "string", "maxLength": 400},
        "verdict": {"type": "string", "enum": ["1", "2", "tie"]},
    },
    "required": ["reason", "verdict"],
    "additionalProperties": False,
}


class PairwiseStage(Stage):
    """Compares ``pair["a"]`` and ``pair["b"]``: two requests, one per order."""

    name = "pairwise"
    version = "1"
    role = "judge"
    has_schema = True

    def __init__(self, max_tokens: int | None = None, temperature: float | None = None) -> None:
        self.max_tokens = max_tokens
        self.temperature = temperature

    def requests(self, record: Record, *, structured: bool = False) -> list[ChatRequest]:
        language = language_of(record)
        question = question_of(record)
        pair = pair_of(record)
        system = render("pairwise", language, "system")
        form = render("pairwise", language, "json_format" if structured else "text_format")
        out = []
        for first, second in ORDERS:
            user = render("pairwise", language, "user", question=question, first=pair[first], second=pair[second], format=form)
            out.append(ChatRequest(messages=chat(system, user), max_tokens=self.max_tokens, temperature=self.temperature,
                                   json_schema=SCHEMA if structured else None))
        return out

    def parse(self, record: Record, completions: list[Completion], *, structured: bool = False) -> list[Record]:
        if len(completions) != len(ORDERS):
            raise ValueError(f"pairwise got {len(completions)} completions for {len(ORDERS)} orders")
        verdicts = []
        for index, ((first, second), completion) in enumerate(zip(ORDERS, completions)):
            try:
                shown, reason = read_verdict(completion.text, structured)
            except ParseError as exc:
                raise ParseError(exc.reason, f"order {index + 1}: {exc.detail}") from None
            winner = {"1": first, "2": second}.get(shown, "tie")
            verdicts.append({"first": first, "winner": winner, "reason": reason})
        return [{**record, "pairwise": combine(verdicts)}]

    def repair_requests(
        self, record: Record, completions: list[Completion], error: ParseError
    ) -> list[ChatRequest] | None:
        # Both orders are asked again; the one that was readable exactly as before (a cache hit).
        language = language_of(record)
        out = []
        for request, completion in zip(self.requests(record), completions, strict=True):
            try:
                read_verdict(completion.text, structured=False)
            except ParseError as exc:
                if completion.text is not None:
                    request = repair_request(request, completion.text, exc, "pairwise", language)
            out.append(request)
        return out


def pair_of(record: Record) -> dict[str, str]:
    pair = record.get("pair")
    if not isinstance(pair, dict) or not all(isinstance(pair.get(side), str) and pair[side].strip() for side in "ab"):
        raise ValueError(f"record {record.get('id')!r} has no pair of answers to compare ({{'a': ..., 'b': ...}})")
    return pair


def combine(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """The pair's outcome from its per-order verdicts: a side wins only when every order names it."""
    winners = {v["winner"] for v in verdicts}
    consistent = len(winners) == 1
    winner = winners.pop() if consistent else "tie"
    return {"verdicts": verdicts, "winner": winner, "consistent": consistent}


def read_verdict(text: str | None, structured: bool = False) -> tuple[str, str]:
    """``("1" | "2" | "tie", reason)`` from one judge reply."""
    if text is None:
        raise ParseError("no_output", "the completion has no text")
    return read_either(strip_reasoning(text), structured, _read_text_verdict, _read_json_verdict)


def _value(match: re.Match[str]) -> str:
    return match.group("num") or "tie"


def _read_text_verdict(text: str) -> tuple[str, str]:
    matches = list(_VERDICT_MARKER.finditer(text)) or list(_VERDICT_PHRASE.finditer(text))
    if matches:
        verdict = _value(matches[-1])  # the verdict comes at the end; earlier mentions are discussion
    else:
        bare = _BARE.match(text.strip())
        if bare is None:
            raise ParseError("missing_verdict", "no [Verdict] marker and no recognisable verdict (1, 2 or tie)")
        verdict = _value(bare)
    reason = read_sections(text, _REASON_START, _REASON_END).get("reason") or clean_body(_VERDICT_LINE.sub("", text))
    return verdict, reason[:MAX_REASON_CHARS]


def _read_json_verdict(text: str) -> tuple[str, str]:
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ParseError("invalid_json", f"expected a JSON object with verdict and reason, got {type(data).__name__}")
    raw = lookup(data, "verdict", "winner", "better", "结论")
    if isinstance(raw, bool) or raw is None:
        raise ParseError("missing_verdict", "no verdict given")
    bare = _BARE.match(str(raw).strip())
    if bare is None:
        raise ParseError("invalid_verdict", f"verdict {str(raw)[:40]!r} is not 1, 2 or tie")
    reason = json_text(lookup(data, "reason", "justification", "explanation", "理由"))
    return _value(bare), reason[:MAX_REASON_CHARS]
