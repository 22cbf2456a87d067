"""Batch generation: the engine's own job, ``condor generate PROMPTS.jsonl -o OUT``.

Each input line is ``{"id": ..., "prompt": "..."}`` or ``{"id": ..., "messages": [...]}``, optionally with
per-line ``max_tokens``/``temperature``/``seed``. The output, ``OUT/output.jsonl``, has one line per input
line in input order: the ``id``, the ``output`` text or an ``error``, ``finish_reason`` and ``usage``.
Lines that are not valid inputs get an ``error`` too; no line is ever dropped.

Work is keyed by line number, not by ``id``, so duplicate ids cannot collide; the input file's
fingerprint is recorded so that a run directory is never resumed over a different file. The input is
read several times (fingerprint, count, work, ordered output), so a stream (``/dev/stdin``, a pipe) is
first copied once into ``OUT/inputs/``; and a file this run writes (``OUT/output.jsonl``) is refused as
input, since writing the output would replace it.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tempfile
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from condor.llm.base import ChatRequest, Completion, LLMBackend, clean_text
from condor.llm.settings import describe_change, settings_key
from condor.run.executor import StageOutcome
from condor.run.local import StageRunner
from condor.run.progress import ProgressBoard
from condor.files import file_mode
from condor.run.directory import RunDirectory
from condor.run.store import RunStoreError, atomic_write_lines, dumps
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


def _validate_line(number: int, raw: bytes) -> tuple[Record | None, str | None]:
    """A work record for a valid line, or an error message naming the line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"line {number}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
    try:
        data = json.loads(text)
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
    """Yield (line number, record or None, error or None) for every non-blank line, lazily.

    A line that is not UTF-8 is an invalid line like any other, with its number; the rest is read.
    """
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if raw.strip():
                record, error = _validate_line(number, raw)
                yield number, record, error


def regular_file(path: Path, what: str) -> Path:
    """``path``, when it is a regular file; an :class:`InputError` for a pipe, a device or a missing file."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise InputError(
            f"{path}: not a regular file (a pipe or a device?); the {what} is read more than once, so save it "
            "to a file and pass that"
        )
    return path


def _prompts_file(prompts: Path, run: RunDirectory) -> Path:
    """The prompts as a file that can be read again, bound to the run directory by its fingerprint.

    A stream is copied into ``OUT/inputs/prompts.jsonl`` as it is read (once), and the copy is used.
    """
    run.refuse_own(prompts, "prompts file")
    try:
        mode = prompts.stat().st_mode
    except OSError as exc:
        raise InputError(f"{prompts}: cannot read ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        run.bind_inputs("prompts", fingerprint(prompts))
        return prompts
    target = run.root / "inputs" / "prompts.jsonl"
    target.parent.mkdir(exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".prompts.", suffix=".tmp", dir=target.parent)
    digest = hashlib.sha256()
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as copy, prompts.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
                copy.write(block)
        # Bound before it replaces an earlier copy: a different stream must not overwrite the input
        # that this run directory's results belong to.
        run.bind_inputs("prompts", digest.hexdigest())
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"{prompts}: cannot read ({exc.strerror or exc})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


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
    #: Of ``errors``: lines that were not valid inputs, and valid lines whose model call failed.
    invalid: int = 0
    failed: int = 0
    #: The commonest errors of failed calls, ``{message: count}``.
    failure_messages: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


async def generate_batch(
    prompts: Path,
    out_dir: Path,
    backend: LLMBackend,
    *,
    board: ProgressBoard | None = None,
    retry_failed: bool = False,
    force: bool = False,
    settings: dict[str, Any] | None = None,
) -> BatchResult:
    """Run (or resume) batch generation and write ``out_dir/output.jsonl`` in input order.

    ``settings`` are the sampling settings that shape the results (:func:`~condor.llm.settings.sampling`):
    recorded with the results, and when they differ from those of a finished earlier run, every line
    is generated again (answers made under the old ones are not passed off as the new ones').
    """
    run = RunDirectory(out_dir, force=force)
    with run.lock():
        return await _generate(run, prompts, out_dir, backend, board=board, retry_failed=retry_failed,
                               settings=settings or {})


async def _generate(
    run: RunDirectory, prompts: Path, out_dir: Path, backend: LLMBackend, *, board: ProgressBoard | None,
    retry_failed: bool, settings: dict[str, Any],
) -> BatchResult:
    prompts = _prompts_file(prompts, run)
    run.manifest["backend"] = backend.describe()
    store = run.stage(STAGE_NAME)
    with prompts.open("rb") as handle:  # a cheap count for the progress bar: no JSON parsing
        count = sum(1 for raw in handle if raw.strip())
    if not count:
        raise InputError(f"{prompts}: no prompts (every line is blank)")
    notes: list[str] = []
    previous = (store.completion() or {}).get("settings") if store.is_complete() else None
    changed = bool(settings) and previous is not None and previous != settings
    if changed:
        notes.append(f"generate: {describe_change(previous, settings)} since the outputs were made; generating them again")
    if retry_failed or not store.is_complete() or changed:
        store.clear_complete()
        runner = StageRunner(GenerateStage(), backend, store, board=board, retry_failed=retry_failed,
                             settings_key=settings_key(settings))
        outcome = await runner.run((record for _, record, _ in read_prompts(prompts) if record is not None), total=count)
        stage_entry = run.manifest["stages"].setdefault(STAGE_NAME, {})
        stage_entry.update({**outcome.as_dict(), "settings": settings})
        store.mark_complete({**outcome.as_dict(), "settings": settings})
        run.save_manifest()
    else:
        outcome = StageOutcome(STAGE_NAME)
    output_path = out_dir / "output.jsonl"
    result = _write_ordered_output(prompts, store, output_path)
    outputs, invalid, failed, messages = result
    run.manifest["stages"].setdefault(STAGE_NAME, {}).update(
        {"outputs": outputs, "errors": invalid + failed, "invalid": invalid, "failed": failed,
         "failure_messages": dict(messages.most_common(3))})
    run.save_manifest()
    return BatchResult(output_path, outputs, invalid + failed, outcome, invalid, failed,
                       dict(messages.most_common(3)), notes)


def _write_ordered_output(prompts: Path, store, path: Path) -> tuple[int, int, int, Counter[str]]:
    """Put outputs back in input order without holding their text in memory.

    Units are stored in completion order. One pass records, per input line, the byte offset of its
    latest unit; a second pass walks the input lines and seeks to each unit. Returns the lines written,
    how many were invalid input, how many failed at the model, and the failures' messages.
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
    invalid = failed = 0
    messages: Counter[str] = Counter()

    def lines() -> Iterator[str]:
        handles = [shard.open("rb") for shard in shards]
        try:
            yield from ordered(handles)
        finally:
            for handle in handles:
                handle.close()

    def ordered(handles) -> Iterator[str]:
        nonlocal invalid, failed
        for number, record, error in read_prompts(prompts):
            if record is None:
                invalid += 1
                yield dumps({"id": None, "line": number, "output": None, "finish_reason": None,
                             "usage": None, "error": f"invalid input: {error}"})
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
                failed += 1
                messages[str(out["error"])[:300]] += 1
            yield dumps(out)

    count = atomic_write_lines(path, lines())
    return count, invalid, failed, messages
