"""Reading what a model answered when asked for sub-topics or for a numbered choice.

Models write anything: JSON with or without a code fence, a Python list as the paper's prompt asks,
numbered or bulleted lists (``1.``, ``-``, ``一、``), one comma-separated line, a preamble before the
list, bold markers, "Name: explanation" lines. These functions accept all of that and raise
:class:`ReplyError` with a short reason when nothing usable is left; they never raise anything else.
Whether a name is too long or a duplicate is the caller's business.
"""

from __future__ import annotations

import ast
import json
import math
import re
from typing import Any

from condor.tree.model import strip_unprintable

_FENCE = re.compile(r"```[a-zA-Z]*\s*(.*?)```", re.S)
_MARKER = re.compile(
    r"^\s*(?:[-*•·+●○▪]|\d{1,3}\s*[.)、:：]|[（(]\d{1,3}[)）]|[一二三四五六七八九十]{1,3}\s*[、.．])\s*"
)
# No leading \s*: searched (not anchored), "\s*X" retries the whole run of spaces from every position
# in it, which is quadratic (seconds for a 20 KB run). Spaces left in front are removed by _clean.
_EXPLANATION = re.compile(r"(?:[:：]|\s[-–—]\s).*$")
_QUOTES = " \t\"'“”‘’`*_「」『』《》"
_TRAILING = _QUOTES + ".,;:，。；：、!！"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"
# A tag name never holds these; in a "name" they are debris of a list the parser did not recognise,
# e.g. 'Insomnia"] These cover the main areas: [core'.
_DEBRIS = frozenset('{}[]"')
_NONE_WORDS = ("none", "no fit", "nothing", "无", "没有", "都不")


class ReplyError(ValueError):
    """A model answer with nothing usable in it; ``reason`` is a short slug."""

    def __init__(self, reason: str, text: str | None = None) -> None:
        snippet = (text or "").strip().replace("\n", " ")[:80]
        super().__init__(f"{reason}: {snippet!r}" if snippet else reason)
        self.reason = reason
        #: The start of the answer, for reports (empty when there was no answer).
        self.snippet = repr(snippet) if snippet else ""


def parse_subtopics(text: str | None) -> list[str]:
    """The sub-topic names in a reply, in order, cleaned, without exact repeats."""
    if text is None or not text.strip():
        raise ReplyError("empty_reply", text)
    body = _unfence(text)
    structured = _structured(body)
    if structured is not None:
        names = _names_from_structure(structured)
    elif body.startswith("[") and body.endswith("]"):
        # A list without quotes, e.g. [Sleep, Insomnia]: not JSON, not Python, but clear enough.
        names = re.split(r"[,，、]", body[1:-1])  # split on the mark alone; _clean trims (see _EXPLANATION)
    elif body.startswith(("{", "[")):
        raise ReplyError("malformed_json", text)
    else:
        names = _names_from_lines(body)
    cleaned: list[str] = []
    seen: set[str] = set()
    for name in names:
        name = _clean(name)
        if name and not _DEBRIS.intersection(name) and name.casefold() not in seen:
            seen.add(name.casefold())
            cleaned.append(name)
    if not cleaned:
        raise ReplyError("no_subtopics", text)
    return cleaned


def parse_choice(text: str | None, count: int) -> int | None:
    """The option number chosen among ``1..count``; ``None`` when the model says none fits (0 or "none")."""
    if text is None or not text.strip():
        raise ReplyError("empty_reply", text)
    body = _unfence(text)
    structured = _structured(body)
    value: Any = structured.get("choice") if isinstance(structured, dict) else structured
    if isinstance(value, bool):
        raise ReplyError("not_a_choice", text)
    if isinstance(value, str):
        body = value
        value = None
    if value is None:
        match = re.search(r"\d+", body)
        if match is None:
            if any(word in body.casefold() for word in _NONE_WORDS):
                return None
            raise ReplyError("not_a_choice", text)
        value = int(match.group())
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        raise ReplyError("not_a_choice", text)
    choice = int(value)
    if choice == 0:
        return None
    if not 1 <= choice <= count:
        raise ReplyError("choice_out_of_range", text)
    return choice


def _unfence(text: str) -> str:
    text = _strip_reasoning(text)
    match = _FENCE.search(text)
    return match.group(1).strip() if match else text.strip()


def _strip_reasoning(text: str) -> str:
    """``text`` without a leading ``<think>…</think>`` block.

    Reasoning models put their deliberation first; its numbers and lists ("options 1 and 4 are
    close") would otherwise be read as the answer. Only a block at the very start is removed, so a
    tag that merely mentions "<think>" later in an answer is left alone.
    """
    stripped = text.lstrip()
    if not stripped.startswith(_THINK_OPEN):
        return text
    end = stripped.find(_THINK_CLOSE)
    if end < 0:
        # Reasoning that never finished (cut off by max_tokens): there is no answer after it.
        raise ReplyError("unfinished_reasoning", text)
    answer = stripped[end + len(_THINK_CLOSE) :]
    if not answer.strip():
        raise ReplyError("empty_reply", text)
    return answer


def _structured(body: str) -> Any:
    """JSON or a Python literal found in ``body`` (whole, or its outermost brackets); else None."""
    candidates = [body]
    for opening, closing in (("{", "}"), ("[", "]")):
        start, end = body.find(opening), body.rfind(closing)
        if 0 <= start < end:
            candidates.append(body[start : end + 1])
    for candidate in candidates:
        for reader in (json.loads, ast.literal_eval):
            try:
                value = reader(candidate)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(value, (dict, list, tuple, int, float)):
                return list(value) if isinstance(value, tuple) else value
    # A JSON value followed by commentary ('["Sleep", "Insomnia"] These cover… [core]'): the
    # outermost-bracket guess above spans into the commentary, so read the first complete value.
    for opening in ("{", "["):
        start = body.find(opening)
        if start < 0:
            continue
        try:
            value, _ = json.JSONDecoder().raw_decode(body, start)
        except (ValueError, RecursionError):
            value = _first_literal(body, start, opening)
        if isinstance(value, (dict, list)):
            return value
    return None


def _first_literal(body: str, start: int, opening: str) -> Any:
    """The Python literal (``['a', 'b']``) starting at ``start`` and ending at one of the next few
    closing brackets, or None. Bounded so that a long reply is not re-parsed over and over."""
    closing = "}" if opening == "{" else "]"
    end = start
    for _ in range(8):
        end = body.find(closing, end + 1)
        if end < 0:
            return None
        try:
            value = ast.literal_eval(body[start : end + 1])
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return list(value) if isinstance(value, tuple) else value
    return None


def _names_from_structure(value: Any) -> list[str]:
    if isinstance(value, dict):
        for key in ("subtopics", "sub_topics", "topics", "items"):
            if isinstance(value.get(key), list):
                return _names_from_structure(value[key])
        lists = [item for item in value.values() if isinstance(item, list)]
        return _names_from_structure(lists[0]) if lists else []
    if isinstance(value, list):
        names = []
        for item in value:
            if isinstance(item, str):
                names.append(item)
            elif isinstance(item, dict) and isinstance(item.get("name"), str):
                names.append(item["name"])
            elif isinstance(item, (int, float)) and not isinstance(item, bool):
                names.append(str(item))
        return names
    return []


def _names_from_lines(body: str) -> list[str]:
    lines = [line for line in body.splitlines() if line.strip()]
    marked = [line for line in lines if _MARKER.match(line)]
    if marked:
        # With a list present, unmarked lines are preamble or commentary.
        return [_EXPLANATION.sub("", _MARKER.sub("", line, count=1)) for line in marked]
    if len(lines) == 1:
        return re.split(r"[,，、;；]", lines[0])  # the mark alone; _clean trims (see _EXPLANATION)
    return [_EXPLANATION.sub("", line) for line in lines if not line.rstrip().endswith((":", "："))]


def _clean(name: str) -> str:
    # Invisible controls go; the text is otherwise kept as the model wrote it (NFC comes when it is stored).
    name = " ".join(strip_unprintable(name.replace("**", "")).split())
    name = name.lstrip(_QUOTES).rstrip(_TRAILING)
    return " ".join(name.split())
