"""Prompt templates shipped with the stages, and the record fields every prompt is built from.

Each stage has one template file per language in ``condor/stages/prompts`` (``critique.en.txt``,
``critique.zh.txt``). A file holds named sections, each opened by a line ``=== name ===``, so that a
stage's system message, user message, text-format and JSON-format instructions and repair note sit
together and are translated together. Sections are :class:`string.Template` text: ``$name`` is filled
in, ``$$`` is a literal dollar sign, and braces and brackets need no escaping.

This module does not decide what a prompt says; the templates do. It only loads, fills and combines.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from string import Template
from typing import Any

from condor.llm.base import ChatRequest, Completion
from condor.stages.base import ParseError, Record

LANGUAGES = ("en", "zh")
_SECTION = re.compile(r"^=== *([a-z_]+) *===[ \t]*$", re.MULTILINE)
#: A bad reply quoted back in a repair request is cut to this many characters, to bound the prompt.
REPAIR_QUOTE_CHARS = 8000


@lru_cache(maxsize=None)
def prompt_sections(stage: str, language: str) -> dict[str, Template]:
    """The named sections of ``prompts/<stage>.<language>.txt``."""
    if language not in LANGUAGES:
        raise ValueError(f"no prompts for language {language!r}; supported: {', '.join(LANGUAGES)}")
    resource = resources.files("condor.stages").joinpath("prompts", f"{stage}.{language}.txt")
    text = resource.read_text(encoding="utf-8")
    parts = _SECTION.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]; the preamble is a comment for translators.
    sections = {parts[i]: Template(parts[i + 1].strip("\n")) for i in range(1, len(parts) - 1, 2)}
    if not sections:
        raise ValueError(f"prompt file {stage}.{language}.txt has no '=== name ===' sections")
    return sections


def render(stage: str, language: str, section: str, **values: Any) -> str:
    """One section of a stage's template with ``values`` filled in."""
    sections = prompt_sections(stage, language)
    if section not in sections:
        raise ValueError(f"prompt file {stage}.{language}.txt has no section {section!r}")
    # Trailing spaces stay: the judge layout ends in "[Score] ", the space inviting the number on that line.
    return sections[section].substitute(values).lstrip().rstrip("\r\n")


def language_of(record: Record) -> str:
    """The record's language (``en`` or ``zh``); a record without one is English."""
    language = record.get("language") or "en"
    if language not in LANGUAGES:
        raise ValueError(f"record {record.get('id')!r} has unsupported language {language!r}")
    return language


def question_of(record: Record) -> str:
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"record {record.get('id')!r} has no question; run the questions stage first")
    return question


def versions_of(record: Record) -> list[dict[str, Any]]:
    versions = record.get("versions")
    if not isinstance(versions, list) or not versions:
        raise ValueError(f"record {record.get('id')!r} has no answer versions; run the answer stage first")
    return versions


def reply_text(completions: list[Completion], index: int = 0) -> str:
    """The text of one completion, or ParseError("no_output") when the backend returned none."""
    if index >= len(completions):
        raise ParseError("no_output", f"expected a completion at position {index}, got {len(completions)}")
    text = completions[index].text
    if text is None:
        raise ParseError("no_output", completions[index].error or "the completion has no text")
    return text


def chat(system: str | None, user: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    return messages


def stage_request(
    stage: str,
    language: str,
    user: str,
    *,
    schema: dict[str, Any] | None,
    structured: bool,
    max_tokens: int | None,
    temperature: float | None,
) -> ChatRequest:
    """A stage's usual single-turn request: its system prompt, ``user``, and ``schema`` in structured mode."""
    return ChatRequest(
        messages=chat(render(stage, language, "system"), user),
        max_tokens=max_tokens,
        temperature=temperature,
        json_schema=schema if structured else None,
    )


def repair_first(stage: Any, record: Record, completions: list[Completion], error: ParseError) -> list[ChatRequest] | None:
    """The repair of a one-request stage: its text-mode request followed by the reply that failed."""
    if not completions or completions[0].text is None:
        return None
    original = stage.requests(record)[0]
    return [repair_request(original, completions[0].text, error, stage.prompt_name, language_of(record))]


def repair_request(
    original: ChatRequest, bad_reply: str, error: ParseError, stage: str, language: str
) -> ChatRequest:
    """A follow-up turn: the original conversation, the reply that could not be read, and a request to
    write it again in the stage's text layout (the executor parses repairs in text mode)."""
    quoted = bad_reply if len(bad_reply) <= REPAIR_QUOTE_CHARS else bad_reply[:REPAIR_QUOTE_CHARS] + "\n[...]"
    problem = error.detail or error.reason
    note = render(stage, language, "repair", problem=problem, layout=render(stage, language, "text_format"))
    return ChatRequest(
        messages=[*original.messages, {"role": "assistant", "content": quoted}, {"role": "user", "content": note}],
        max_tokens=original.max_tokens,
        temperature=original.temperature,
        top_p=original.top_p,
        seed=original.seed,
        stop=original.stop,
        sample_index=original.sample_index,
    )
