"""Batch generation: the engine's own job, ``condor generate PROMPTS.jsonl -o OUT``.

Each input line is ``{"id": ..., "prompt": "..."}`` or ``{"id": ..., "messages": [...]}``, optionally with
per-line ``max_tokens``/``temperature``/``seed``. The output, ``OUT/output.jsonl``, has one line per input
line in input order: the ``id``, the ``output`` text or an ``error``, ``finish_reason`` and ``usage``.
Lines that are not valid inputs get an ``error`` too; no line is ever dropped.

Work is keyed by line number, not by ``id``, so duplicate ids cannot collide; the input file's
fingerprint is recorded so that a run directory is never resumed over a different file.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from condor.llm.base import ChatRequest, Completion, LLMBackend, clean_text
from condor.run.executor import StageOutcome
from condor.run.local import StageRunner
from condor.run.progress import ProgressBoard
from condor.run.store import RunDirectory, RunStoreError, atomic_write_lines, dumps
from condor.stages.base import Record, Stage

STAGE_NAME = "generate"
VALID_ROLES = {"system", "user", "assistant", "tool", "developer"}
#: Per-line sampling options: name, accepted types, inclusive range.
_LINE_OPTIONS = (
    ("max_tokens", int, 1, 1_000_000),
    ("temperature", (int, float), 0.0, 2.0),
    ("seed", int, -(2**63), 2**63 - 1),
)


class InputError(ValueError):
    """The prompts file cannot be read at all (missing, not UTF-8)."""


def _validate_line(number: int, raw: str) -> tuple[Record | None, str | None]:
    """A work record for a valid line, or an error message naming the line."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"line {number}: not valid JSON ({exc.msg})"
    if not isinstance(data, dict):
        return None, f"line {number}: expected a JSON object, got {type(data).__name__}"
    if "id" not in data:
        return None, f"line {number}: missing 'id'"
    if "messages" in data:
        messages = data["messages"]
        if not isinstance(messages, list) or not messages:
            return None, f"line {number}: 'messages' must be a non-empty list"
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                return None, f"line {number}: messages[{i}] needs a string 'content'"
            if message.get("role") not in VALID_ROLES:
                return None, f"line {number}: messages[{i}] has role {message.get('role')!r}"
    elif isinstance(data.get("prompt"), str):
        messages = [{"role": "user", "content": data["prompt"]}]
    else:
        return None, f"line {number}: needs a string 'prompt' or a 'messages' list"
    messages = [{**m, "content": clean_text(m["content"])} for m in messages]
    record: Record = {"id": str(number), "input_id": data["id"], "line": number, "messages": messages}
    for option, kind, low, high in _LINE_OPTIONS:
        if option not in data:
            continue
        value = data[option]
        if isinstance(value, bool) or not isinstance(value, kind) or not low <= value <= high:
            return None, f"line {number}: {option!r} must be a number from {low} to {high}, got {value!r}"
        record[option] = value
    return record, None


def read_prompts(path: Path) -> Iterator[tuple[int, Record | None, str | None]]:
    """Yield (line number, record or None, error or None) for every non-blank line, lazily."""
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        try:
            for number, raw in enumerate(handle, start=1):
                if raw.strip():
                    record, error = _validate_line(number, raw)
                    yield number, record, error
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None


def fingerprint(path: Path) -> str:
    """SHA-256 of a file's bytes, read in blocks; a missing or unreadable file is an InputError."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


class GenerateStage(Stage):
    """One request per input line; failures are output (with their error), not rejections."""

    name = STAGE_NAME
    version = "1"
    role = "answerer"
    accepts_failures = True
    annotate = False  # output lines stay flat: id, output or error, finish_reason, usage, model

    def requests(self, record: Record, *, structured: bool = False) -> list[ChatRequest]:
        return [
            ChatRequest(
                messages=record["messages"],
                max_tokens=record.get("max_tokens"),
                temperature=record.get("temperature"),
                seed=record.get("seed"),
            )
        ]

    def parse(self, record: Record, completions: list[Completion], *, structured: bool = False) -> list[Record]:
        completion = completions[0]
        out: Record = {
            "id": record["input_id"],
            "line": record["line"],
            "output": completion.text,
            "finish_reason": completion.finish_reason,
            "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
            "model": completion.model,
        }
        if completion.error is not None:
            out["error"] = completion.error
        return [out]


@dataclass
class BatchResult:
    output_path: Path
    outputs: int
    errors: int
    outcome: StageOutcome


async def generate_batch(
    prompts: Path,
    out_dir: Path,
    backend: LLMBackend,
    *,
    board: ProgressBoard | None = None,
    retry_failed: bool = False,
) -> BatchResult:
    """Run (or resume) batch generation and write ``out_dir/output.jsonl`` in input order."""
    run = RunDirectory(out_dir)
    with run.lock():
        return await _generate(run, prompts, out_dir, backend, board=board, retry_failed=retry_failed)


async def _generate(
    run: RunDirectory, prompts: Path, out_dir: Path, backend: LLMBackend, *, board: ProgressBoard | None, retry_failed: bool
) -> BatchResult:
    run.bind_inputs("prompts", fingerprint(prompts))
    run.manifest["backend"] = backend.describe()
    store = run.stage(STAGE_NAME)
    invalid: dict[int, str] = {}
    total = 0

    def records() -> Iterator[Record]:
        nonlocal total
        for number, record, error in read_prompts(prompts):
            total += 1
            if record is None:
                invalid[number] = error or "invalid line"
                continue
            yield record

    if retry_failed or not store.is_complete():
        store.clear_complete()
        runner = StageRunner(GenerateStage(), backend, store, board=board, retry_failed=retry_failed)
        with prompts.open("rb") as handle:  # a cheap count for the progress bar: no JSON parsing
            count = sum(1 for raw in handle if raw.strip())
        outcome = await runner.run(records(), total=count)
        stage_entry = run.manifest["stages"].setdefault(STAGE_NAME, {})
        stage_entry.update(outcome.as_dict())
        store.mark_complete(outcome.as_dict())
        run.save_manifest()
    else:
        outcome = StageOutcome(STAGE_NAME)
        for number, record, error in read_prompts(prompts):
            total += 1
            if record is None:
                invalid[number] = error or "invalid line"
    output_path = out_dir / "output.jsonl"
    outputs, errors = _write_ordered_output(prompts, store, invalid, output_path)
    run.manifest["stages"].setdefault(STAGE_NAME, {}).update({"outputs": outputs, "errors": errors})
    run.save_manifest()
    return BatchResult(output_path, outputs, errors, outcome)


def _write_ordered_output(prompts: Path, store, invalid: dict[int, str], path: Path) -> tuple[int, int]:
    """Put outputs back in input order without holding their text in memory.

    Units are stored in completion order. One pass records, per input line, the byte offset of its
    latest unit; a second pass walks the input lines and seeks to each unit.
    """
    # Per input line: which shard holds its latest unit, and where in that shard.
    shards = store.shard_paths()
    where_shard, offsets = array("h"), array("q")
    for index, shard in enumerate(shards):
        with shard.open("rb") as handle:
            position = 0
            for number, raw in enumerate(handle, start=1):
                if raw.endswith(b"\n"):
                    try:
                        line = int(json.loads(raw)["input_id"])
                    except (ValueError, KeyError, TypeError):
                        raise RunStoreError(f"{shard}:{number}: unreadable unit; the file was edited or corrupted") from None
                    if line >= len(offsets):
                        offsets.extend([-1] * (line + 1 - len(offsets)))
                        where_shard.extend([-1] * (line + 1 - len(where_shard)))
                    offsets[line] = position
                    where_shard[line] = index
                position += len(raw)
    errors = 0

    def lines() -> Iterator[str]:
        handles = [shard.open("rb") for shard in shards]
        try:
            yield from ordered(handles)
        finally:
            for handle in handles:
                handle.close()

    def ordered(handles) -> Iterator[str]:
        nonlocal errors
        for number, record, error in read_prompts(prompts):
            if record is None:
                errors += 1
                yield dumps({"id": None, "line": number, "output": None, "finish_reason": None,
                             "usage": None, "error": f"invalid input: {invalid.get(number, error)}"})
                continue
            offset = offsets[number] if number < len(offsets) else -1
            if offset < 0:
                raise RunStoreError(
                    f"{store.units_path} has no result for input line {number} although the stage is marked "
                    f"finished; delete {store.complete_path} and rerun to complete it"
                )
            units = handles[where_shard[number]]
            units.seek(offset)
            unit = json.loads(units.readline())
            if unit.get("records"):
                out = unit["records"][0]
            else:
                detail = unit.get("error") or "; ".join(
                    f"{r['reason']}: {r['detail']}" if r.get("detail") else r["reason"] for r in unit.get("rejections", ())
                )
                out = {"id": record["input_id"], "line": number, "output": None, "finish_reason": None,
                       "usage": unit.get("usage"), "error": detail or "no output"}
            if out.get("error"):
                errors += 1
            yield dumps(out)

    count = atomic_write_lines(path, lines())
    return count, errors
