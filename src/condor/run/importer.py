"""Bring an existing SFT dataset into Condor Refine: ``condor refine --input DATA.jsonl``.

Each line is either chat format, ``{"messages": [..., {"role": "user"}, {"role": "assistant"}]}``
(the last user turn and the assistant turn after it are refined; earlier turns are kept as they are not),
or ``{"question": ..., "answer": ...}``. Optional fields carried over: ``id``, ``language``, ``tag_path``,
``task``, ``difficulty`` (also read from a ``meta`` object). A line that is not usable becomes a
rejection naming the line and the problem.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterator

from condor.filters.quality import detect_language
from condor.llm.base import clean_text
from condor.run.batch import InputError
from condor.stages.base import Record

CARRIED = ("language", "tag_path", "task", "difficulty", "domain")


def _pair(data: dict[str, Any]) -> tuple[str, str] | str:
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list) or len(messages) < 2:
            return "'messages' must be a list with a user turn followed by an assistant turn"
        last, before = messages[-1], messages[-2]
        if not (isinstance(last, dict) and isinstance(before, dict)):
            return "every message must be an object"
        if last.get("role") != "assistant" or before.get("role") != "user":
            return "the last two messages must be a user turn and then an assistant turn"
        question, answer = before.get("content"), last.get("content")
    else:
        question, answer = data.get("question"), data.get("answer")
    if not isinstance(question, str) or not question.strip():
        return "no question text"
    if not isinstance(answer, str) or not answer.strip():
        return "no answer text"
    return question, answer


def import_units(path: Path) -> Iterator[tuple[str, list[Record], list[dict]]]:
    """Units for the ``imported`` step: one per non-blank line, a record or a rejection."""
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    seen: set[str] = set()
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            key = f"line-{number}"
            try:
                raw = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                # One bad line is that line's rejection, with its number; the rest of the file is read.
                problem = f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1})"
                yield key, [], [_reject(number, problem, line.decode("utf-8", "replace"))]
                continue
            try:
                data = json.loads(raw)
            except json.JSONDecodeError as exc:
                yield key, [], [_reject(number, f"not valid JSON ({exc.msg})", raw)]
                continue
            if not isinstance(data, dict):
                yield key, [], [_reject(number, f"expected a JSON object, got {type(data).__name__}", raw)]
                continue
            pair = _pair(data)
            if isinstance(pair, str):
                yield key, [], [_reject(number, pair, raw)]
                continue
            question, answer = clean_text(pair[0]), clean_text(pair[1])
            meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
            record_id = str(data.get("id") or meta.get("id") or f"import/{hashlib.sha1(question.encode()).hexdigest()[:12]}")
            if record_id in seen:
                record_id = f"{record_id}#line{number}"
            seen.add(record_id)
            record: Record = {"id": record_id, "question": question, "source": f"{path.name}:{number}",
                              "versions": [{"round": 0, "answer": answer, "finish_reason": None, "source": "imported"}]}
            for name in CARRIED:
                value = data.get(name, meta.get(name))
                if value is not None:
                    record[name] = value
            record.setdefault("language", detect_language(question) or "en")
            yield key, [record], []


def _reject(number: int, problem: str, raw: str) -> dict[str, Any]:
    return {"stage": "imported", "reason": "invalid_input", "detail": f"line {number}: {problem}",
            "record": {"id": f"line-{number}", "raw": raw.strip()[:2000]}}
