"""Condor Void, first step: one work item (tag, task type, language) becomes three questions.

One request asks for an easy, a medium and a hard question together, as the paper does, so that the
three differ from each other. The reply is read tolerantly (see :mod:`condor.stages.markers`): markers
in any case or bracket width, Chinese level names, headings instead of markers, missing end markers,
questions out of order or under the wrong label, JSON instead of text and the other way round.

Record fields read: ``id``, ``tag_path`` (domain first), ``task``, ``language``.
Each of the three output records is a copy of the input plus ``id`` (``<input id>/<difficulty>``),
``parent_id``, ``difficulty`` and ``question``.

What this module leaves out: whether a question is good enough to keep (the filters decide) and
choosing which tags and tasks to combine (the tree sampler does).
"""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any, Iterable, Mapping

from condor.llm.base import ChatRequest, Completion
from condor.stages.base import ParseError, Record, Stage
from condor.stages.markers import (
    SEP,
    bracketed,
    clean_body,
    extract_json,
    find_markers,
    has_content,
    heading,
    json_text,
    lookup,
    read_either,
    strip_reasoning,
)
from condor.stages.prompting import language_of, render, repair_first, reply_text, stage_request
from condor.stages.tasks import TaskType

DIFFICULTIES = ("easy", "medium", "hard")

_LEVEL_WORDS = {
    "easy": r"easy|simple|basic|beginner|简单|容易|初级|基础",
    "medium": r"medium|moderate|intermediate|中等|中级|适中|一般",
    "hard": r"hard|difficult|advanced|challenging|困难|较难|高级|复杂|难",
}
_LEVEL_SUFFIX = rf"(?:{SEP}(?:level|question|request|difficulty|难度|级别|题目|题|问题|请求))?"
_LEVEL_PREFIX = r"(?:(?:difficulty|level|难度|级别)[ \t]*+[:：]?[ \t]*+)?"
_BRACKET_PATTERNS = {
    **{
        level: bracketed(rf"{_LEVEL_PREFIX}(?:{words}){_LEVEL_SUFFIX}(?:{SEP}(?:start|开始))?")
        for level, words in _LEVEL_WORDS.items()
    },
    # Bare "[end]", "[开始]", "[结束]" are not markers: they turn up inside questions as code (Julia's
    # `v[end]`) or as quoted text, and reading them as markers cut the question there.
    "start": bracketed(rf"question{SEP}start|start{SEP}of{SEP}(?:the{SEP})?question|问题{SEP}开始"),
    "end": bracketed(
        rf"(?:(?:{'|'.join(_LEVEL_WORDS.values())}){SEP})?question{SEP}end"
        rf"|end{SEP}of{SEP}(?:the{SEP})?question|问题{SEP}结束"
    ),
}
# Used only when a reply has no bracketed markers at all: "Easy:", "**Medium question**", "## 困难".
_HEADING_PATTERNS = {
    level: heading(
        rf"{_LEVEL_PREFIX}(?:{words}){_LEVEL_SUFFIX}|(?:question|问题){SEP}\d?{SEP}[(（][ \t]*(?:{words})[ \t]*[)）]"
    )
    for level, words in _LEVEL_WORDS.items()
}
_LABEL = re.compile(r"^(?:question|request|问题|请求)[ \t]*[:：][ \t]*", re.IGNORECASE)
_QUOTES = {'"': '"', "“": "”", "「": "」", "'": "'"}
# Sign-offs that models append after the last question when they forget its end marker. Only phrases
# that are a sign-off as a whole are listed: "Note:", "The above ..." or "希望 ..." alone also open real
# parts of a question ("The above table is from our Q1 report. Forecast March", "希望能给出代码示例").
_CLOSING = re.compile(
    r"^(?:\*\*)?(?:i hope (?:this|these|that|you)|hope (?:this|these|that)|these (?:three )?(?:questions|requests)"
    r"|let me know|feel free|each (?:question|request)|the (?:above|three) (?:questions|requests)"
    r"|希望(?:这|以上|对你|对您|能对|能帮|能够帮|有所帮助)|以上(?:就是|是|三个|这些|问题|请求)|这三个|这些问题|这些请求|如需)",
    re.IGNORECASE,
)
#: A sign-off is short; a longer paragraph, a question mark or a "please" is part of the question.
_CLOSING_MAX_CHARS = 160
_ASKS = re.compile(r"[?？]|\bplease\b|请", re.IGNORECASE)


def _is_closing(paragraph: str) -> bool:
    paragraph = paragraph.strip()
    return len(paragraph) <= _CLOSING_MAX_CHARS and not _ASKS.search(paragraph) and bool(_CLOSING.match(paragraph))


SCHEMA: dict[str, Any] = {
    "title": "questions",
    "type": "object",
    # Questions are not bounded above: a material-processing question carries its material, and a grammar
    # that stops a string at maxLength cuts it mid-material while finish_reason still says "stop".
    "properties": {level: {"type": "string", "minLength": 10} for level in DIFFICULTIES},
    "required": list(DIFFICULTIES),
    "additionalProperties": False,
}


class QuestionStage(Stage):
    """Writes an easy, a medium and a hard question for one tag and task type."""

    name = "questions"
    version = "1"
    role = "question_writer"
    has_schema = True
    prompt_name = "questions"

    def __init__(
        self,
        tasks: Mapping[str, TaskType] | Iterable[TaskType],
        few_shot: Mapping[str, list[str]] | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        few_shot_count: int = 3,
    ) -> None:
        self.tasks = dict(tasks) if isinstance(tasks, Mapping) else {task.slug: task for task in tasks}
        if not self.tasks:
            raise ValueError("QuestionStage needs at least one task type")
        self.few_shot = {domain.casefold(): list(items) for domain, items in (few_shot or {}).items()}
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.few_shot_count = few_shot_count

    def _examples(self, record: Record, domain: str) -> list[str]:
        pool = [q for q in self.few_shot.get(domain.casefold(), []) if isinstance(q, str) and q.strip()]
        if len(pool) <= self.few_shot_count:
            return pool
        # Rotate through the pool by a stable hash of the item, so items of one domain see different
        # examples and the same item always sees the same ones (the request cache depends on it).
        offset = int(hashlib.sha1(str(record.get("id")).encode()).hexdigest(), 16) % len(pool)
        return [pool[(offset + i) % len(pool)] for i in range(self.few_shot_count)]

    def requests(self, record: Record, *, structured: bool = False) -> list[ChatRequest]:
        language = language_of(record)
        tag_path = record.get("tag_path")
        if not isinstance(tag_path, list) or not tag_path or not all(isinstance(p, str) for p in tag_path):
            raise ValueError(f"record {record.get('id')!r}: tag_path must be a non-empty list of names")
        task = self.tasks.get(record.get("task", ""))
        if task is None:
            raise ValueError(
                f"record {record.get('id')!r}: unknown task type {record.get('task')!r}; known: {', '.join(self.tasks)}"
            )
        examples = self._examples(record, tag_path[0])
        examples_text = ""
        if examples:
            example_list = "\n".join(f"- {' '.join(q.split())}" for q in examples)
            examples_text = "\n" + render("questions", language, "examples", domain=tag_path[0], example_list=example_list)
        user = render(
            "questions",
            language,
            "user",
            tag_path=" > ".join(tag_path),
            task_name=task.name(language),
            task_description=task.description(language),
            examples=examples_text,
            format=render("questions", language, "json_format" if structured else "text_format"),
        )
        return [
            stage_request(
                "questions", language, user, schema=SCHEMA, structured=structured,
                max_tokens=self.max_tokens, temperature=self.temperature,
            )
        ]

    def parse(self, record: Record, completions: list[Completion], *, structured: bool = False) -> list[Record]:
        text = strip_reasoning(reply_text(completions))
        finish_reason = completions[0].finish_reason
        found = read_either(
            text, structured, lambda t: read_text_questions(t, finish_reason), lambda t: read_json_questions(t, finish_reason)
        )
        parent = record["id"]
        return [
            {**copy.deepcopy(record), "id": f"{parent}/{level}", "parent_id": parent, "difficulty": level, "question": found[level]}
            for level in DIFFICULTIES
        ]

    def repair_requests(
        self, record: Record, completions: list[Completion], error: ParseError
    ) -> list[ChatRequest] | None:
        return repair_first(self, record, completions, error)


def _clean_question(text: str, trim_closing: bool) -> str:
    text = clean_body(text)
    if trim_closing:
        paragraphs = re.split(r"\n[ \t]*\n", text)
        while len(paragraphs) > 1 and _is_closing(paragraphs[-1]):
            paragraphs.pop()
        text = "\n\n".join(paragraphs).strip()
    text = _LABEL.sub("", text).strip()
    if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1] and text[0] not in text[1:-1] and text[-1] not in text[1:-1]:
        text = text[1:-1].strip()
    return text


def read_text_questions(text: str, finish_reason: str | None = None) -> dict[str, str]:
    """The three questions of a marker-format reply, keyed by difficulty; ParseError when unusable."""
    markers = find_markers(text, _BRACKET_PATTERNS, skip_code=True)
    if not markers:
        markers = find_markers(text, _HEADING_PATTERNS, skip_code=True)
    # Walk the markers: a level label or a start marker opens a question, an end marker, the next start
    # marker or the next level label closes it. Prose between a label and its start marker is dropped.
    bodies: list[tuple[str | None, str, bool]] = []  # (level, text, closed by an end marker)
    level: str | None = None  # the label of the open question
    open_at: int | None = None
    opened_by_label = False
    for marker in markers:
        if marker.kind in DIFFICULTIES:
            if open_at is not None:
                bodies.append((level, text[open_at : marker.start], False))
            level, open_at, opened_by_label = marker.kind, marker.end, True
        elif marker.kind == "start":
            if open_at is not None and not opened_by_label and has_content(text[open_at : marker.start]):
                # Two start markers in a row: the first question simply lost its end marker.
                bodies.append((level, text[open_at : marker.start], False))
                level = None
            open_at, opened_by_label = marker.end, False
        elif open_at is not None:  # an end marker closing the open question
            bodies.append((level, text[open_at : marker.start], True))
            level, open_at = None, None
    if open_at is not None:
        bodies.append((level, text[open_at:], False))
    if bodies and not bodies[-1][2] and finish_reason == "length":
        raise ParseError("truncated", "the reply was cut off by the token limit before the last question ended")

    found: dict[str, str] = {}
    spare: list[str] = []
    labelled_empty: set[str] = set()
    for index, (label, body, closed) in enumerate(bodies):
        question = _clean_question(body, trim_closing=not closed and index == len(bodies) - 1)
        if not has_content(question):
            if label:
                labelled_empty.add(label)
            continue
        if label and label not in found:
            found[label] = question
        else:
            spare.append(question)  # unlabelled, or a second question under one label
    for level in DIFFICULTIES:
        if level not in found and spare:
            found[level] = spare.pop(0)
    return _complete(found, labelled_empty, markers_seen=bool(markers))


def read_json_questions(text: str, finish_reason: str | None = None) -> dict[str, str]:
    """The three questions of a JSON reply: an object keyed by difficulty, or a list of three."""
    data = extract_json(text)
    if isinstance(data, dict) and len(data) == 1:
        inner = next(iter(data.values()))
        if isinstance(inner, (dict, list)):
            data = inner  # {"questions": {...}} or {"questions": [...]}
    found: dict[str, str] = {}
    if isinstance(data, dict):
        names = {"easy": ("easy", "简单"), "medium": ("medium", "中等"), "hard": ("hard", "困难")}
        for level in DIFFICULTIES:
            value = lookup(data, *names[level])
            if isinstance(value, dict):
                value = lookup(value, "question", "text", "问题")
            found[level] = _clean_question(json_text(value), trim_closing=False)
    elif isinstance(data, list):
        spare = []
        for item in data:
            if isinstance(item, dict):
                level = str(lookup(item, "difficulty", "level") or "").strip().casefold()
                question = _clean_question(json_text(lookup(item, "question", "text", "问题")), trim_closing=False)
                if level in DIFFICULTIES and level not in found:
                    found[level] = question
                else:
                    spare.append(question)
            else:
                spare.append(_clean_question(json_text(item), trim_closing=False))
        for level in DIFFICULTIES:
            if level not in found and spare:
                found[level] = spare.pop(0)
    else:
        raise ParseError("invalid_json", f"expected a JSON object with easy, medium and hard, got {type(data).__name__}")
    empty = {level for level, question in found.items() if not has_content(question)}
    return _complete({k: v for k, v in found.items() if k not in empty}, empty, markers_seen=True)


def _complete(found: dict[str, str], labelled_empty: set[str], markers_seen: bool) -> dict[str, str]:
    missing = [level for level in DIFFICULTIES if level not in found]
    if missing:
        if not markers_seen:
            raise ParseError("missing_questions", "no [Easy]/[Medium]/[Hard] or [Question Start] markers found")
        if set(missing) & labelled_empty:
            empty = ", ".join(level for level in missing if level in labelled_empty)
            raise ParseError("empty_question", f"the {empty} question is empty")
        raise ParseError("missing_questions", f"found {len(found)} of 3 questions; missing: {', '.join(missing)}")
    keys = {" ".join(found[level].casefold().split()) for level in DIFFICULTIES}
    if len(keys) < 3:
        raise ParseError("duplicate_questions", "two of the three questions are the same")
    return {level: found[level] for level in DIFFICULTIES}
