"""Benchmark decontamination: drop questions that overlap an evaluation prompt.

``--decontaminate FILE`` (repeatable) loads benchmark prompts: JSONL with ``prompt``, ``question``,
``instruction``, ``turns`` (MT-Bench, Arena-Hard) or ``messages`` (the user turns), a JSON array of
such objects (AlpacaEval), or plain text, one prompt per line. Text is normalised (NFKC, lower case,
punctuation dropped) into words, each Chinese character a word of its own.

The rule is the usual one: a question is contaminated when it shares a 13-word sequence with a
benchmark prompt. A prompt shorter than that must appear whole instead (its own length is the
n-gram), and prompts under 5 words are too short to tell copying from coincidence and are skipped
(counted in :attr:`BenchmarkIndex.skipped`). The rejection's reason is ``contamination`` and its detail
names the benchmark file and line. The index keeps one hash per n-gram: about 100 bytes per benchmark
word, so even large benchmarks fit easily.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from pathlib import Path
from typing import Any, Iterator

from condor.documents import decode_utf8
from condor.errors import ConfigError
from condor.filters.base import Gate
from condor.stages.base import Record, Rejection

NGRAM = 13
SHORTEST = 5
_CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
#: One Chinese character, or a run of other letters and digits.
_TOKEN = re.compile(f"[{_CJK_CLASS}]|[^\\W_{_CJK_CLASS}]+")
#: The benchmark files read in one run may hold at most this many prompts, a guard against a wrong path.
MAX_PROMPTS = 2_000_000


def words(text: str) -> list[str]:
    """Normalised words; a run of Chinese characters becomes one word per character."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).casefold())


def _prompt_of(item: Any) -> str | None:
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return None
    for key in ("prompt", "question", "instruction", "input", "text"):
        if isinstance(item.get(key), str):
            return item[key]
    parts: list[str] = []
    for turn in item.get("turns") or ():
        content = turn.get("content") if isinstance(turn, dict) else turn
        if isinstance(content, str):
            parts.append(content)
    for message in item.get("messages") or ():
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            parts.append(message["content"])
    return "\n".join(parts) or None


def read_prompts(path: Path) -> Iterator[tuple[int, str]]:
    """``(line, prompt)`` for every prompt in a benchmark file; errors name the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read benchmark file ({exc.strerror or exc})") from None
    text = decode_utf8(data, path, ConfigError)
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: line {exc.lineno}: not a valid JSON array ({exc.msg})") from None
        for index, item in enumerate(items if isinstance(items, list) else [], start=1):
            prompt = _prompt_of(item)
            if prompt:
                yield index, prompt
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        prompt: str | None = line
        if line.lstrip().startswith("{"):
            try:
                prompt = _prompt_of(json.loads(line))
            except json.JSONDecodeError:
                prompt = line
        if prompt:
            yield number, prompt


def _key(gram: list[str]) -> bytes:
    return hashlib.blake2b("\x1f".join(gram).encode("utf-8"), digest_size=8).digest()


class BenchmarkIndex:
    """The n-grams of a set of benchmark prompts, each pointing back to its file and line."""

    def __init__(self, ngram: int = NGRAM, shortest: int = SHORTEST) -> None:
        self.ngram = ngram
        self.shortest = shortest
        self._grams: dict[int, dict[bytes, str]] = {}
        self.files: list[str] = []
        self.prompts = 0
        self.skipped = 0
        self._digest = hashlib.sha256(f"{ngram}:{shortest}".encode())

    def add_file(self, path: str | Path) -> None:
        path = Path(path)
        self.files.append(str(path))
        for line, prompt in read_prompts(path):
            self.prompts += 1
            if self.prompts > MAX_PROMPTS:
                raise ConfigError(f"{path}: more than {MAX_PROMPTS:,} benchmark prompts in all; is this the right file?")
            self.add(prompt, f"{path.name}:{line}")

    def add(self, prompt: str, where: str) -> None:
        tokens = words(prompt)
        if len(tokens) < self.shortest:
            self.skipped += 1
            return
        size = min(self.ngram, len(tokens))
        table = self._grams.setdefault(size, {})
        for i in range(len(tokens) - size + 1):
            table.setdefault(_key(tokens[i : i + size]), where)
        self._digest.update(("\x1e".join(tokens) + "\x1d").encode("utf-8"))

    @property
    def fingerprint(self) -> str:
        return self._digest.hexdigest()

    def match(self, text: str) -> tuple[str, int] | None:
        """Where ``text`` overlaps a benchmark prompt (``file:line``) and the length of the overlap."""
        tokens = words(text)
        for size, table in self._grams.items():
            for i in range(len(tokens) - size + 1):
                where = table.get(_key(tokens[i : i + size]))
                if where is not None:
                    return where, size
        return None


class Decontaminate(Gate):
    """Rejects questions that share an n-gram sequence with a benchmark prompt."""

    name = "decontaminate"
    ordered = False
    chunked = False
    threaded = False

    def __init__(self, index: BenchmarkIndex) -> None:
        self.index = index

    @property
    def settings(self) -> Any:
        return self.index.fingerprint

    def check(self, record: Record) -> Record | Rejection:
        found = self.index.match(record.get("question") or "")
        if found is None:
            return record
        where, size = found
        return Rejection(self.name, "contamination", f"shares {size} words in a row with benchmark prompt {where}", record)


def load_index(paths: list[str], ngram: int = NGRAM) -> BenchmarkIndex:
    index = BenchmarkIndex(ngram)
    for path in paths:
        index.add_file(path)
    return index
