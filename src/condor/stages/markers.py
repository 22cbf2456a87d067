"""Tolerant reading of what models write back: bracketed section markers, headings and JSON.

Stages ask for output such as ``[Strength Start] ... [Strength End]`` or a JSON object, and models come
close without being exact: lower case, extra spaces, full-width brackets (``【】``), markdown bold or
escaped brackets around the markers, a missing end marker, prose before and after, JSON inside a code
fence, a ``<think>`` block in front. This module reads all of those as the same thing.

The tolerance lives in the marker patterns, never in a rewrite of the text: the content between
markers is returned exactly as the model wrote it (a Chinese answer may use ``【注意】`` or a LaTeX
``\\[ x \\]`` that must survive). What each stage accepts as a usable value, and which ParseError it
raises otherwise, stays in the stage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, TypeVar

from condor.stages.base import ParseError

T = TypeVar("T")

_OPEN = r"(?:\\?\[|【|［|〔)"
_CLOSE = r"(?:\\?\]|】|］|〕)"
#: The first character of a bracketed marker: a heading hash or one of the openers above.
_FIRST = r"[#\\\[【［〔]"
_BOLD_PAIR = r"\*\*|__"
#: Separators models put inside a marker name: "Question Start", "Question_Start", "QuestionStart".
SEP = r"[ \t_\-]*+"


def bracketed(inner: str) -> str:
    """The pattern of a bracketed marker whose name matches ``inner``, with any heading hashes before it.

    Bold around a marker is not part of the pattern: a pattern that swallowed the space and ``**`` after
    one marker would overlap the next marker in ``**[Easy]** **[Question Start]**``. The ``**`` left at
    the edges of a body is removed by :func:`clean_body` instead.
    """
    # The lookahead names every character a marker can start with, so the engine skips other positions
    # at once instead of trying the optional hashes and the openers at each one: three times faster on a
    # reply of prose, and these patterns run over every reply.
    return rf"(?={_FIRST})(?:#{{1,6}}[ \t]*+)?{_OPEN}[ \t]*+(?:{inner})[ \t]*+{_CLOSE}"


def heading(inner: str) -> str:
    """The pattern of a heading line that names a section: ``Strengths:``, ``**Weaknesses**``, ``## 建议``.

    A heading must start a line and end with a colon or the end of the line, so that an ordinary
    sentence starting with the same word ("Hard drives fail when...") is not taken for one.
    Whitespace runs are possessive (``*+``): with plain ``*`` a line of many spaces makes the engine
    try every way of splitting it between neighbouring runs, which takes minutes on a long reply.
    """
    return (
        rf"(?m:^[ \t]*+(?:#{{1,6}}[ \t]*+)?(?:\d{{1,2}}[.)][ \t]*+)?(?:{_BOLD_PAIR}[ \t]*+)?(?:{inner})"
        rf"[ \t]*+(?:[(（][^)）\n]{{0,30}}[)）][ \t]*+)?(?:{_BOLD_PAIR}[ \t]*+)?(?:[:：][ \t]*+(?:{_BOLD_PAIR})?|(?=\n)|$))"
    )


@dataclass(frozen=True, slots=True)
class Marker:
    """One marker found in a reply: its kind (a section name, or a stage's own label) and its span."""

    kind: str
    start: int
    end: int


_CODE_SPAN = re.compile(r"```.*?(?:```|\Z)|`[^`\n]++`", re.DOTALL)


def code_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) of every fenced block and inline code span in ``text``."""
    return [(m.start(), m.end()) for m in _CODE_SPAN.finditer(text)]


def find_markers(text: str, patterns: dict[str, str], *, skip_code: bool = False) -> list[Marker]:
    """Every non-overlapping match of the named patterns, in text order.

    When two patterns match at the same place the longer match wins, so ``[Question End]`` is never
    read as a shorter marker that happens to be its prefix. With ``skip_code``, matches that start
    inside backticks are left out: that is code the model is quoting (``v[end]``), not a marker.
    """
    spans = code_spans(text) if skip_code and "`" in text else []
    # (start, -length, pattern order, kind, end): sorting puts the longest match first at each place,
    # and patterns in their given order among equals, without building a Marker for every match.
    found: list[tuple[int, int, int, str, int]] = []
    for order, (kind, regex) in enumerate(_compiled(tuple(patterns.items()))):
        for match in regex.finditer(text):
            start, end = match.span()
            if end > start and not (spans and any(a < start < b for a, b in spans)):
                found.append((start, start - end, order, kind, end))
    found.sort()
    kept: list[Marker] = []
    for start, _, _, kind, end in found:
        if kept and start < kept[-1].end:
            continue
        kept.append(Marker(kind, start, end))
    return kept


@lru_cache(maxsize=64)
def _compiled(patterns: tuple[tuple[str, str], ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    # The stages' pattern tables are module constants: compiled once, not looked up in re's cache per call.
    return tuple((kind, re.compile(pattern, re.IGNORECASE)) for kind, pattern in patterns)


def read_section_parts(text: str, starts: dict[str, str], ends: dict[str, str]) -> dict[str, list[str]]:
    """Every block of each named section, cleaned, in text order (see :func:`read_sections`)."""
    patterns = {f"start:{name}": p for name, p in starts.items()}
    patterns.update({f"end:{name}": p for name, p in ends.items()})
    parts: dict[str, list[str]] = {}
    current: str | None = None
    body_start = 0
    for marker in find_markers(text, patterns):
        kind, _, name = marker.kind.partition(":")
        if current is not None:
            parts.setdefault(current, []).append(clean_body(text[body_start : marker.start]))
            current = None
        if kind == "start":
            current, body_start = name, marker.end
    if current is not None:
        parts.setdefault(current, []).append(clean_body(text[body_start:]))
    return parts


def read_sections(text: str, starts: dict[str, str], ends: dict[str, str]) -> dict[str, str]:
    """The text of each named section, between its start marker and an end marker.

    A section runs from its start marker to the next end marker, the next start marker or the end of the
    reply, whichever comes first, so a forgotten end marker costs nothing. A section written several
    times (one block per weakness, say) is joined with newlines, leaving out blocks with no words in
    them (an echoed ``...`` placeholder). Sections never opened are absent.
    """
    return {
        name: "\n".join(part for part in blocks if has_content(part))
        for name, blocks in read_section_parts(text, starts, ends).items()
    }


_RULE_LINE = re.compile(r"[ \t]*(?:-{3,}|={3,}|\*{3,})[ \t]*")


def _strip_debris(text: str) -> str:
    """``text`` without leading colons and ``**``/``__`` that stand alone at either end, in one pass.

    Done with two indices rather than repeated regex substitutions: a reply of many ``** `` would
    otherwise be copied once per pair removed, which takes seconds on a long reply.
    """
    start, end = 0, len(text)
    while True:
        while start < end and text[start].isspace():
            start += 1
        if start < end and text[start] in ":：":
            start += 1
        elif text.startswith(("**", "__"), start, end) and (start + 2 == end or text[start + 2].isspace()):
            start += 2
        else:
            break
    while True:
        while end > start and text[end - 1].isspace():
            end -= 1
        if end - start >= 2 and text[end - 2 : end] in ("**", "__") and (end - 2 == start or text[end - 3].isspace()):
            end -= 2
        else:
            break
    return text[start:end]


def clean_body(text: str) -> str:
    """Trim the debris markers leave behind: a colon, bold markup cut off from its marker, rule lines.

    A bullet or a bold phrase inside the body is content and stays: only ``**`` that cannot open or
    close bold where it stands (followed or preceded by a space, or alone) is debris.
    """
    text = _strip_debris(text)
    if text.startswith("**") and text.endswith("**") and text.count("**") == 2 and len(text) > 4:
        text = text[2:-2].strip()  # bold around the whole body is marker decoration, or pointless
    elif text.count("**") == 1 and (text.startswith("**") or text.endswith("**")):
        text = text.removeprefix("**").removesuffix("**").strip()  # half of a bold pair split by a marker
    lines = text.split("\n")
    while lines and (not lines[-1].strip() or _RULE_LINE.fullmatch(lines[-1])):
        lines.pop()
    return "\n".join(lines).strip()


def has_content(text: str) -> bool:
    """Whether text holds at least one letter, digit or ideograph (``...`` and ``**`` do not count)."""
    return any(ch.isalnum() for ch in text)


_THINK = re.compile(r"\A\s*<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_THINK_END = re.compile(r"</think>", re.IGNORECASE)


def strip_reasoning(text: str) -> str:
    """Drop the ``<think>`` block reasoning models put before their reply.

    Only a block at the very start is reasoning: an answer may well discuss ``<think>`` tags later on,
    and that text is content. An unclosed leading block means the model never got past thinking, so
    everything goes. A ``</think>`` with no ``<think>`` before it (servers that strip the opening
    tag) drops what comes before it.
    """
    match = _THINK.match(text)
    if match:
        return text[match.end() :]
    end = _THINK_END.search(text)
    if end and "<think>" not in text[: end.start()].lower():
        return text[end.end() :]
    return text


_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)


def extract_json(text: str) -> Any:
    """The JSON value in a reply: bare, inside a code fence, or wrapped in prose.

    Raises ParseError("invalid_json") when no candidate decodes.
    """
    candidates = [text.strip()]
    candidates.extend(m.group(1).strip() for m in _FENCE.finditer(text))
    for opener, closer in (("{", "}"), ("[", "]")):
        first, last = text.find(opener), text.rfind(closer)
        if first != -1 and last > first:
            candidates.append(text[first : last + 1])
    # strict=False: a raw line break inside a string (models write them, and llama.cpp's grammars let
    # them through) reads as the line break it means instead of failing the whole reply.
    decoder = json.JSONDecoder(strict=False)
    for candidate in candidates:
        if not candidate:
            continue
        try:
            return decoder.decode(candidate)
        except (ValueError, RecursionError):
            pass
        # Prose after a complete object ("{...} Hope this helps") defeats decode but not raw_decode.
        start = min((i for i in (candidate.find("{"), candidate.find("[")) if i != -1), default=-1)
        if start != -1:
            try:
                return decoder.raw_decode(candidate, start)[0]
            except (ValueError, RecursionError):
                pass
    raise ParseError("invalid_json", "no JSON value could be decoded from the reply")


# Control characters other than tab and line feed: a JSON string may carry them (escaped, or raw since
# extract_json reads leniently), and no reader wants them in a dataset's text.
_CONTROL = dict.fromkeys(c for c in range(32) if c not in (9, 10))


def json_text(value: Any) -> str:
    """A JSON field as text: strings as they are (less control characters), lists of points as one
    point per line."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.translate(_CONTROL).strip()
    if isinstance(value, (list, tuple)):
        lines = [json_text(item) for item in value]
        lines = [line for line in lines if line]
        if len(lines) == 1:
            return lines[0]
        return "\n".join(line if line.startswith(("-", "*")) else f"- {line}" for line in lines)
    if isinstance(value, dict):
        return "\n".join(f"{key}: {json_text(item)}" for key, item in value.items() if json_text(item))
    if isinstance(value, bool):
        return ""
    return str(value)


def lookup(data: dict[str, Any], *names: str) -> Any:
    """The first of ``names`` present in ``data``, keys compared case- and separator-insensitively."""
    folded = {re.sub(r"[\s_\-]", "", str(key)).casefold(): value for key, value in data.items()}
    for name in names:
        key = re.sub(r"[\s_\-]", "", name).casefold()
        if key in folded:
            return folded[key]
    return None


def read_either(text: str, structured: bool, read_text: Callable[[str], T], read_json: Callable[[str], T]) -> T:
    """Read a reply in the format that was asked for, else in the other one.

    Models asked for markers sometimes answer in JSON and the other way round; either is fine. When
    both fail, the error of the requested format is the one reported, since that is what was asked.
    """
    first, second = (read_json, read_text) if structured else (read_text, read_json)
    try:
        return first(text)
    except ParseError as error:
        try:
            return second(text)
        except ParseError:
            raise error from None
